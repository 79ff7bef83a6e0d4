"""``fgaseg demo --ablations``: the paper's parts switched off one at a time, several seeds.

All variants share one cached tiny CLIP, the same training budget, the same test scenes and
paired seeds (seed s gives every variant the same training batches and class samples), so
differences between rows are not CLIP or data luck. Results are appended to
``ablations.json`` after every run, and a run in progress checkpoints itself to
``partial/`` every 200 steps: a re-run with the same output folder resumes, losing minutes
of a killed run, not hours.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import torch

from fgaseg.errors import ConfigError
from fgaseg.folder_lock import folder_lock
from fgaseg.synth.benchmark import (
    SWITCHES, BenchmarkConfig, build_model, evaluate_training_free, make_test_set, make_train_set,
)
from fgaseg.synth.evaluate import evaluate
from fgaseg.synth.pretrain import pretrained_tiny_clip
from fgaseg.synth.report import mean_std_table, results_table, write_json
from fgaseg.synth.segtrain import train_segmentation

# per-run budget of `fgaseg demo --ablations`: 16x the demo's 300 steps. At 300-2400 steps the
# baseline led and the larger full head overtook it only at 4800 (docs/synthetic.md, "hIoU
# against the budget"), so shorter runs compare under-trained heads of different sizes
ABLATION_STEPS = 4800
# seconds of one core per training step of a run (full model, two single-thread runs side by
# side on 2 cores; the baseline takes ~0.55): only for the up-front estimate
_STEP_CORE_S = 0.75
ABLATION_TEST_SCENES = 300

# name -> config overrides (everything else as in the full model, including the decoder mode)
VARIANTS: Dict[str, Dict[str, object]] = {
    "full FGAseg": {},
    "baseline (all four off)": {s: False for s in SWITCHES},
    "− P2Tformer": {"use_p2tformer": False},
    "− T2Ploss": {"use_t2p_loss": False},
    "− GCS": {"use_gcs": False},
    "− LCS": {"use_lcs": False},
    # the streamlined decoder's aux heads change training too, so compare with a plain-trained one
    "plain decoder (no aux heads)": {"decoder_mode": "plain"},
}

# short names for the command line (`fgaseg demo --ablations --variants full baseline`)
VARIANT_KEYS: Dict[str, str] = {
    "full": "full FGAseg", "baseline": "baseline (all four off)", "no-p2tformer": "− P2Tformer",
    "no-t2ploss": "− T2Ploss", "no-gcs": "− GCS", "no-lcs": "− LCS", "plain-decoder": "plain decoder (no aux heads)",
}


def ablation_config(config: BenchmarkConfig, steps: int, test_scenes: int) -> BenchmarkConfig:
    """The demo config with the per-run budget of the ablation (and the TopK inference rows)."""
    return dataclasses.replace(
        config, segtrain=dataclasses.replace(config.segtrain, steps=steps), num_test_scenes=test_scenes,
        num_overlays=0, topk_rows=(8, 16),
    )


def run_ablations(
    config: BenchmarkConfig, out_dir: Path, seeds: Sequence[int] = (0, 1, 2),
    variants: Optional[Sequence[str]] = None, use_cache: bool = True, progress: bool = True,
    log: Callable[[str], None] = print, jobs: int = 1,
) -> dict:
    """Train and evaluate every variant for every seed; write ``ablations.{json,md}``.

    ``jobs > 1`` runs that many (variant, seed) runs at once in worker processes, each with
    ``torch.get_num_threads() // jobs`` threads (on 2 cores, 2 single-thread runs side by side
    finish more runs per hour than one 2-thread run: the small per-class products of the tiny
    model do not keep two threads busy). A run's numbers depend on its thread count only
    through float rounding.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    names = list(variants) if variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ablation variant(s) {unknown}; choose from {list(VARIANTS)}")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"seeds must be 0 or more, got {list(seeds)}")
    seeds = list(dict.fromkeys(seeds))  # a seed named twice is one run per variant
    # two ablations into one folder would train the same runs twice and overwrite each other's json
    with folder_lock(Path(out_dir), "fgaseg ablation"):
        return _run_ablations(config, Path(out_dir), seeds, names, use_cache, progress, log, jobs)


def _run_ablations(config: BenchmarkConfig, out_dir: Path, seeds: Sequence[int], names: List[str],
                   use_cache: bool, progress: bool, log: Callable[[str], None], jobs: int) -> dict:
    json_path = out_dir / "ablations.json"
    start = time.time()
    for path in stale_partials(out_dir, config):  # like ablations.json, replaced by this config's
        path.unlink()
    clip, clip_meta = pretrained_tiny_clip(config.pretrain, config.world, config.clip_seed, use_cache, progress, log)
    state = _load_previous(json_path, config)
    # seeds and variants of earlier calls stay listed: their runs stay in the file
    state.update({"config": config.to_dict(), "clip": clip_meta,
                  "seeds": sorted(set(state.get("seeds", [])) | set(seeds)),
                  "variants": [v for v in VARIANTS if v in set(state.get("variants", [])) | set(names)]})
    runs: List[dict] = state.setdefault("runs", [])
    done = {(r["variant"], r["seed"]) for r in runs}
    test = make_test_set(config, progress=False)
    if not state.get("training_free"):
        state["training_free"] = evaluate_training_free(clip, test, config, progress)
    total = len(seeds) * len(names)
    # seeds outermost: a cut-short run still has every variant for the first seeds
    todo = [(seed, name) for seed in seeds for name in names if (name, seed) not in done]
    midway = sum(partial_path(out_dir, name, seed).is_file() for seed, name in todo)
    log(ablation_plan(config, len(names), len(seeds), len(todo), jobs, midway))
    finished_here: List[float] = []
    if jobs > 1 and len(todo) > 1:
        results = _runs_in_workers(clip, test, config, todo, min(jobs, len(todo)), out_dir)
    else:
        seed_data: Dict[int, tuple] = {}
        results = (_one_run(clip, test, config, seed, name, seed_data, progress, partial_path(out_dir, name, seed))
                   for seed, name in todo)
    for run in results:
        runs.append(run)
        finished_here.append(run["seconds"])
        left = len(todo) - len(finished_here)
        eta = f"; about {_hours(np.mean(finished_here) * left / min(jobs, max(left, 1)))} left" if left else ""
        log(f"[{len(runs)}/{total}] {run['variant']}, seed {run['seed']}: seen {run['mIoU_seen']:.1f}, unseen "
            f"{run['mIoU_unseen']:.1f}, hIoU {run['hIoU']:.1f} ({run['seconds']:.0f} s{eta})")
        state["elapsed_s"] = round(state.get("elapsed_s", 0) + run["seconds"], 1)
        _write(out_dir, state)
        partial_path(out_dir, run["variant"], run["seed"]).unlink(missing_ok=True)  # its results are safe
    state["wall_s_this_call"] = round(time.time() - start, 1)
    _write(out_dir, state)
    return state


def ablation_plan(config: BenchmarkConfig, variants: int, seeds: int, todo: int, jobs: int, midway: int = 0) -> str:
    """One line: what ``run_ablations`` will train and about how long it takes on 2 idle cores."""
    steps = config.segtrain.steps
    # two single-thread runs side by side finish ~1.5x the runs an hour of one 2-thread run
    parallel = 2.0 if min(jobs, todo) >= 2 else 1.33
    wall = todo * steps * _STEP_CORE_S / parallel
    resumed = f" ({variants * seeds - todo} already done, resumed)" if todo < variants * seeds else ""
    midway = f" ({midway} continue from their checkpoints)" if midway else ""
    return (f"fgaseg ablations: {variants} variants x {seeds} paired seeds = {variants * seeds} runs of "
            f"{steps} FGAseg steps{resumed}, {jobs} at a time; {todo} to train{midway}, at most about "
            f"{_hours(wall)} on 2 idle CPU cores")


def _hours(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def _run_context(config: BenchmarkConfig, name: str, seed: int) -> dict:
    """What a run's checkpoint must match to be resumed: the whole ablation config (as in
    ``ablations.json``), variant, seed."""
    return {"ablation": _as_json(config), "variant": name, "seed": seed}


def _as_json(config: BenchmarkConfig) -> dict:
    import json

    return json.loads(json.dumps(config.to_dict()))


def stale_partials(out_dir: Path, config: BenchmarkConfig) -> List[Path]:
    """Checkpoints in ``out_dir/partial`` of runs made with settings other than ``config``'s."""
    from fgaseg.synth.segtrain import read_run_checkpoint

    stale = []
    for path in sorted((Path(out_dir) / "partial").glob("*.pt")):
        try:
            context = read_run_checkpoint(path).get("context") or {}
        except ConfigError:  # unreadable: named when its run resumes, not taken for another run's
            continue
        if context.get("ablation") != _as_json(config):
            stale.append(path)
    return stale


def partial_path(out_dir: Path, name: str, seed: int) -> Path:
    """Where the run (``name``, ``seed``) checkpoints itself while it trains."""
    slug = "-".join("".join(c if c.isalnum() else " " for c in name.replace("−", "no")).split()).lower()
    return Path(out_dir) / "partial" / f"{slug}_seed{seed}.pt"


def _one_run(clip, test, config: BenchmarkConfig, seed: int, name: str, seed_data: dict, progress: bool,
             checkpoint: Optional[Path] = None) -> dict:
    """Train variant ``name`` with ``seed`` and evaluate it on ``test``.

    ``seed_data`` keeps the last seed's training scenes and paired initial weights for the
    next variant of that seed; ``checkpoint`` makes the training resumable (see
    `train_segmentation`).
    """
    run_config = dataclasses.replace(config, seed=seed)
    if seed not in seed_data:
        seed_data.clear()
        train = make_train_set(run_config, progress=False)
        # the full model's initial weights, shared with every variant (paired initialisation)
        seed_data[seed] = (train, build_model(clip, run_config).state_dict())
    train, init = seed_data[seed]
    t = time.time()
    model = build_model(clip, run_config, init_from=init, **VARIANTS[name])
    stats = train_segmentation(model, train, run_config.segtrain, seed=seed, progress=progress,
                               desc=f"{name}, seed {seed}", checkpoint=checkpoint,
                               context=_run_context(config, name, seed))
    metrics = evaluate(model, test, config.eval_batch_size, progress, topk=0, chunk_size=config.eval_chunk_size)
    # a resumed run counts the training time of its earlier parts too
    seconds = time.time() - t + stats["resumed_seconds"]
    run = {"variant": name, "seed": seed, **_metrics(metrics), "train_seconds": stats["seconds"],
           "seconds": round(seconds, 1), "loss_curve": stats["loss_curve"]}
    if name == "full FGAseg":
        run["inference_variants"] = _inference_variants(model, test, config, progress)
    return run


def _runs_in_workers(clip, test, config: BenchmarkConfig, todo: List[Tuple[int, str]], jobs: int,
                     out_dir: Path):
    """Yield the runs of ``todo`` as ``jobs`` worker processes finish them."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: a forked child of a process whose OpenMP pool has run can hang
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(clip, test, threads))
    try:
        pending = {pool.submit(_worker_run, config, seed, name, partial_path(out_dir, name, seed))
                   for seed, name in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_WORKER: Dict[str, object] = {}


def _worker_init(clip, test, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(clip=clip, test=test, seed_data={})


def _worker_run(config: BenchmarkConfig, seed: int, name: str, checkpoint: Path) -> dict:
    return _one_run(_WORKER["clip"], _WORKER["test"], config, seed, name, _WORKER["seed_data"], progress=False,
                    checkpoint=checkpoint)


def _write(out_dir: Path, state: dict) -> None:
    write_json(out_dir / "ablations.json", state)
    save_ablation_curves(out_dir / "ablation_curves.png", state)
    (out_dir / "ablations.md").write_text(ablation_markdown(state) + "\n")


def save_ablation_curves(path: Path, state: dict) -> Path:
    """Training loss vs step of every variant, averaged over its seeds (smoothed over 2 % of the
    steps, at least 20): all steps on a log scale, and the last 40 % of the steps on a linear one.

    Whether each curve has levelled off by the last step is what tells if the budget is enough.
    """
    from fgaseg.synth.plot import curve, line_chart

    series = {}
    for name in state.get("variants", VARIANTS):
        losses = [r["loss_curve"] for r in state.get("runs", []) if r["variant"] == name and r.get("loss_curve")]
        if losses:
            length = min(len(l) for l in losses)
            series[name] = curve(np.mean([l[:length] for l in losses], axis=0), max(20, length // 50))
    last = max((len(points) for points in series.values()), default=0)
    tail = {name: points[int(0.6 * last):] for name, points in series.items()}
    return line_chart([("FGAseg training loss per variant (mean over seeds)", series),
                       ("the last 40 % of the steps", tail)], path, size=(700, 420), log_y=(True, False))


def _metrics(m: dict) -> dict:
    out = {k: m[k] for k in ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU_all", "pixel_acc")}
    return {**out, "attributes": m.get("attributes", {})}


def _inference_variants(model, test, config: BenchmarkConfig, progress: bool) -> Dict[str, dict]:
    """The same trained full model evaluated with TopK pruning (and timed)."""
    out = {}
    for k in config.topk_rows:
        m = evaluate(model, test, config.eval_batch_size, progress, desc=f"TopK {k}", topk=k,
                     chunk_size=config.eval_chunk_size)
        out[f"TopK {k}"] = {**_metrics(m), "seconds": m["seconds"]}
    return out


def conflicts_with_previous(out_dir: Path, config: BenchmarkConfig) -> bool:
    """True when ``out_dir`` holds an ablation (results or checkpoints of unfinished runs) made
    with other settings: it cannot be resumed."""
    path = Path(out_dir) / "ablations.json"
    return (path.is_file() and not _load_previous(path, config)) or bool(stale_partials(out_dir, config))


def _load_previous(path: Path, config: BenchmarkConfig) -> dict:
    import json

    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return {}
    # only resume runs made with the same settings
    same = state.get("config") == _as_json(config)
    return state if same else {}


def late_loss_change(losses: Sequence[float]) -> Tuple[float, float, float]:
    """Mean loss over the first 5 %, over steps 60–80 % and over the last 20 % of a run."""
    n = len(losses)
    a, b = int(0.6 * n), int(0.8 * n)
    return (float(np.mean(losses[:max(1, n // 20)] or losses)), float(np.mean(losses[a:b] or losses)),
            float(np.mean(losses[b:] or losses)))


def ablation_markdown(state: dict) -> str:
    groups: Dict[str, List[dict]] = {}
    # every variant with runs in the file, also those a later call with --variants left out
    for name in list(VARIANTS) + [v for v in state.get("variants", []) if v not in VARIANTS]:
        runs = sorted((r for r in state.get("runs", []) if r["variant"] == name), key=lambda r: r["seed"])
        if runs:
            groups[name] = runs
    cfg = state["config"]
    lines = [
        "# Synthetic benchmark: ablations",
        "",
        f"Each run: {cfg['segtrain']['steps']} FGAseg training steps (batch {cfg['segtrain']['batch_size']}) "
        f"on one cached tiny CLIP ({cfg['pretrain']['steps']} steps), evaluated on "
        f"{cfg['num_test_scenes']} held-out scenes; mean ± std over seeds {state.get('seeds')} "
        "(paired: the same seed gives every variant the same batches and the same initial weights "
        "for the parameters it shares with the full model); Δ is mean ± std of the per-seed "
        "difference. Every phrase reaches the head (no class pre-selection).",
        "",
        mean_std_table(groups, reference="full FGAseg" if "full FGAseg" in groups else None),
        "",
        "Has training levelled off? Loss change over the last fifth of the steps (mean over seeds; "
        "`ablation_curves.png` plots the curves), and that change as a share of the whole run's "
        "decrease (loss of the first 5 % of the steps minus loss of the last 20 %):",
        "",
        "| variant | loss, first 5 % | loss, steps 60–80 % | loss, last 20 % | change | share of the run's decrease |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in groups.items():
        tail = [late_loss_change(r.get("loss_curve", [])) for r in runs if r.get("loss_curve")]
        if tail:
            first, before, after = (float(np.mean([t[i] for t in tail])) for i in range(3))
            share = (before - after) / (first - after) if first != after else 0.0
            lines.append(f"| {name} | {first:.4f} | {before:.4f} | {after:.4f} | "
                         f"{100 * (after - before) / before:+.1f} % | {100 * share:.1f} % |")
    full = groups.get("full FGAseg", [])
    inference = {}
    for run in full:
        for key, m in run.get("inference_variants", {}).items():
            inference.setdefault(key, []).append({**m, "seed": run["seed"]})
    if inference:
        lines += ["", "Same trained full model, inference variants:", "",
                  mean_std_table({"no pruning": full, **inference}, reference="no pruning")]
    if state.get("training_free"):
        lines += ["", "Training-free dense CLIP (no segmentation training):", "",
                  results_table(state["training_free"])]
    return "\n".join(lines)

