"""Inference speed and peak memory of FGAseg on this CPU (issue "Fast inference, measured").

    python benchmarks/speed.py            # full run (< 10 min on a quiet 2-core machine)
    python benchmarks/speed.py --quick    # fewer repetitions
    python benchmarks/speed.py --bf16     # also bf16-autocast rows

Protocol: CLIP ViT-B/16 at 384², one 384² view, batch 1, random (seeded) weights, fp32,
``torch.inference_mode``, ``--threads`` intra-op threads (2), ``OMP_WAIT_POLICY=PASSIVE``. For each class count N the
configurations below run in *separate worker processes* (so each one's peak RSS is its own)
that are kept alive and driven round-robin: rep r of every configuration runs before rep r+1
of any, so a burst of load from other processes hits all of them alike. Each worker warms up
first; the table shows the median (and minimum) wall time per image. Text embeddings are
computed once per class list, before timing, and reported separately.

Configurations:

- ``floor``: CLIP dense features alone (``clip.encode_image_dense`` with the guidance layers);
- ``baseline``: CAT-Seg (all four FGAseg switches off, plain decoder);
- ``full``: FGAseg with the plain decoder, no TopK;
- ``fast+topk``: FGAseg with the streamlined decoder and TopK 16, *real* TopK rule. With random
  weights the aux heads are not confident, so (nearly) every class survives every stage;
- ``fast+topk (ctrl)``: the same, but the TopK rule is replaced by "keep the ``--keep``
  classes with the highest aux score" at each of the three stages: a controlled setting that
  shows the cost when a confident (trained) model keeps few classes. Everything else (aux
  heads, gathers, pre-selection) runs as in the real model.

Peak memory is ``ru_maxrss`` of the worker process (model weights, the Python/torch runtime
and the largest inference working set, including the ``(1, N, 384, 384)`` logits returned),
plus the growth over the RSS measured after loading the model and encoding the text.

``benchmarks/results.md`` is regenerated above the line ``<!-- notes -->``; anything written
below that line is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
NOTES_MARKER = "<!-- notes -->"
CLASS_COUNTS = (20, 59, 150, 847)
CONFIGS = ("floor", "baseline", "full", "fast+topk", "fast+topk (ctrl)")
LABELS = {
    "floor": "(a) CLIP dense features (floor)",
    "baseline": "(b) baseline (CAT-Seg: switches off, plain decoder)",
    "full": "(c) full FGAseg, plain decoder, no TopK",
    "fast+topk": "(d) full FGAseg, fast decoder + TopK 16 (random weights)",
    "fast+topk (ctrl)": "(d') full FGAseg, fast decoder + TopK, controlled keep",
}


# ============================================================================ worker side
def _class_names(n: int) -> List[str]:
    """ADE-847 / ADE-150 / PC-59 / VOC-20 names when available (realistic token lengths)."""
    files = {20: "voc20.json", 59: "pc59.json", 150: "ade150.json", 847: "ade847.json"}
    try:
        from importlib import resources

        if n in files:
            text = resources.files("fgaseg.data.classnames").joinpath(files[n]).read_text()
            names = json.loads(text)
            if len(names) == n:
                return list(names)
    except Exception:  # pragma: no cover - fall back to synthetic names
        pass
    return [f"object number {i}" for i in range(n)]


def _rss_mib() -> float:
    """Current resident set size (MiB) from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        return 0.0


def _peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class _KeepRecorder:
    """Wraps the decoder's TopK rule: records kept counts; optionally forces a fixed count."""

    def __init__(self, original, forced_keep: Optional[int]) -> None:
        self.original = original
        self.forced_keep = forced_keep
        self.counts: List[int] = []

    def __call__(self, aux_logits, k):
        import torch

        if self.forced_keep is None:
            keep = self.original(aux_logits, k)
        else:
            n = min(self.forced_keep, aux_logits.shape[1])
            score = aux_logits.amax(dim=(0, 2, 3))
            keep = torch.sort(score.topk(n).indices).values
        self.counts.append(int(keep.numel()))
        return keep


def _build(spec: Dict[str, Any]):
    """Returns ``(run_once, info)`` for a worker spec."""
    import torch

    torch.manual_seed(0)
    kind, n = spec["config"], spec["classes"]
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if spec.get("bf16")
                else torch.autocast("cpu", enabled=False))
    image = torch.rand(1, 3, 384, 384)
    info: Dict[str, Any] = {}
    if kind == "floor":
        from fgaseg.clip import CLIP_MEAN, CLIP_STD, build_clip

        clip = build_clip("ViT-B/16").eval()
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        layers = (3, 7)

        def run_once():
            with torch.inference_mode(), autocast:
                return clip.encode_image_dense((image - mean) / std, layers=layers)

        return run_once, info

    from fgaseg.model import FGASeg, catseg_vitb16_384, fgaseg_vitb16_384

    if kind == "baseline":
        config = catseg_vitb16_384()
    elif kind == "full":
        config = fgaseg_vitb16_384(decoder_mode="plain", topk=None)
    else:
        config = fgaseg_vitb16_384(decoder_mode="fast", topk=16)
    model = FGASeg(config).eval()
    recorder = None
    if kind.startswith("fast+topk"):
        import fgaseg.model.decoder as decoder_module

        forced = spec["keep"] if kind.endswith("(ctrl)") else None
        recorder = _KeepRecorder(decoder_module.keep_indices, forced)
        decoder_module.keep_indices = recorder
    names = _class_names(n)
    start = time.perf_counter()
    with torch.inference_mode():
        model.encode_classes(names)  # cached per class list from here on
    info["text_s"] = time.perf_counter() - start

    def run_once():
        with autocast:
            out = model.segment_logits(image, names)
        assert out.shape == (1, n, 384, 384)
        return out

    def kept():
        if recorder is None or not recorder.counts:
            return None
        last = recorder.counts[-3:]
        recorder.counts.clear()
        return last

    info["kept_fn"] = kept
    return run_once, info


def worker_main(spec: Dict[str, Any]) -> None:
    """Line protocol on stdin/stdout: READY json, then ``run`` -> time json, ``quit`` -> memory json."""
    import torch

    torch.set_num_threads(spec["threads"])
    run_once, info = _build(spec)
    kept_fn = info.pop("kept_fn", None)
    loaded_rss = _rss_mib()  # model + text embeddings, before any image
    for _ in range(spec["warmup"]):
        run_once()
    if kept_fn:
        kept_fn()
    print("READY " + json.dumps({**info, "rss_loaded_mib": loaded_rss, "peak_mib": _peak_mib()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = run_once()
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            del out
            print("TIME " + json.dumps({"wall": wall, "cpu": cpu, "kept": kept_fn() if kept_fn else None}),
                  flush=True)
        elif cmd == "quit":
            print("DONE " + json.dumps({"peak_mib": _peak_mib(), "rss_loaded_mib": loaded_rss}), flush=True)
            return


# ============================================================================ parent side
class Worker:
    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
        env.setdefault("OMP_WAIT_POLICY", spec["omp_wait_policy"])
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._expect("READY")
        self.times: List[Dict[str, Any]] = []

    def _expect(self, tag: str) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        raise RuntimeError(f"worker {self.spec} exited with {self.proc.wait()} before {tag}")

    def run(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.times.append(self._expect("TIME"))

    def finish(self) -> Dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        done = self._expect("DONE")
        self.proc.wait()
        walls = [t["wall"] for t in self.times]
        cpus = [t["cpu"] for t in self.times]
        kept = [t["kept"] for t in self.times if t["kept"]]
        return {
            **self.spec,
            "median_s": statistics.median(walls), "min_s": min(walls), "walls": walls,
            "cpu_util": statistics.median(c / w for c, w in zip(cpus, walls)),
            "peak_mib": done["peak_mib"], "rss_loaded_mib": done["rss_loaded_mib"],
            "text_s": self.ready.get("text_s"), "kept": kept[-1] if kept else None,
        }


def measure(classes: int, configs: List[str], args: argparse.Namespace) -> List[Dict[str, Any]]:
    specs = []
    for kind in configs:
        for bf16 in ([False, True] if args.bf16 and kind in ("floor", "full", "fast+topk (ctrl)") else [False]):
            specs.append({"config": kind, "classes": classes, "threads": args.threads, "bf16": bf16,
                          "warmup": args.warmup, "keep": args.keep, "omp_wait_policy": args.omp_wait_policy})
    workers = []
    try:
        for spec in specs:  # one at a time, so start-up does not compete with anything we time
            workers.append(Worker(spec))
        for rep in range(args.reps):
            order = workers[rep % len(workers):] + workers[:rep % len(workers)]
            for w in order:
                w.run()
        return [w.finish() for w in workers]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()


def _label(row: Dict[str, Any]) -> str:
    return LABELS[row["config"]] + (" [bf16 autocast]" if row["bf16"] else "")


def render(rows: List[Dict[str, Any]], args: argparse.Namespace, meta: Dict[str, Any]) -> str:
    floors = {(r["classes"], r["bf16"]): r["median_s"] for r in rows if r["config"] == "floor"}
    fp32_floor = {n: v for (n, b), v in floors.items() if not b}
    lines = [
        "# Inference speed and memory (`python benchmarks/speed.py`)", "",
        f"Run {meta['date']} on `{meta['cpu']}`, torch {meta['torch']}, {args.threads} threads, "
        f"1 view 384², batch 1, random weights, fp32 unless marked, `inference_mode`, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', args.omp_wait_policy)}; "
        f"{args.warmup} warm-up + median of {args.reps} interleaved reps per cell. "
        f"Load average (1 min) before/after: {meta['load_before']:.1f} / {meta['load_after']:.1f} "
        f"on {meta['cores']} cores; `cpu` = CPU time / wall time of the worker (≈ {args.threads} "
        f"when it had its cores to itself). Total run time {meta['total_s'] / 60:.1f} min.", "",
        "| configuration | N | s / image (median) | min | images / s | × fp32 floor | peak RSS GiB | "
        "Δ RSS GiB | cpu | kept (TopK stages 0/1/2) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = floors.get((r["classes"], False))
        ratio = f"{r['median_s'] / floor:.2f}" if floor else "n/a"
        if r["bf16"] and floors.get((r["classes"], True)):  # also against the bf16 floor
            ratio += f" ({r['median_s'] / floors[(r['classes'], True)]:.2f} vs bf16 floor)"
        kept = "/".join(str(k) for k in r["kept"]) if r.get("kept") else ""
        lines.append(
            f"| {_label(r)} | {r['classes']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
            f"{1 / r['median_s']:.2f} | {ratio} | {r['peak_mib'] / 1024:.2f} | "
            f"{(r['peak_mib'] - r['rss_loaded_mib']) / 1024:.2f} | {r['cpu_util']:.2f} | {kept} |")
    lines += ["", "Text encoding (once per class list, not in the per-image times; CLIP text tower, "
              "1 template):", ""]
    text = {}
    for r in rows:
        if r.get("text_s") is not None and not r["bf16"]:
            text.setdefault(r["classes"], []).append(r["text_s"])
    lines += [", ".join(f"N = {n}: {statistics.median(v):.2f} s" for n, v in sorted(text.items())), ""]
    lines += ["## Targets", ""] + targets(rows, fp32_floor, args) + [""]
    return "\n".join(lines)


def targets(rows: List[Dict[str, Any]], floor: Dict[int, float], args: argparse.Namespace) -> List[str]:
    def get(kind: str, n: int) -> Optional[Dict[str, Any]]:
        return next((r for r in rows if r["config"] == kind and r["classes"] == n and not r["bf16"]), None)

    out = []
    for kind, note in (("fast+topk (ctrl)", f"controlled keep = {args.keep}"),
                       ("fast+topk", "real TopK rule, random weights")):
        a, b = get(kind, 847), get(kind, 20)
        if a and b:
            ratio = a["median_s"] / b["median_s"]
            out.append(f"- FGAseg + TopK, time at 847 / time at 20 classes ({note}): **{ratio:.2f}×** "
                       f"(target ≤ 1.5×: {'met' if ratio <= 1.5 else 'not met'})")
    c = get("full", 150)
    if c and 150 in floor:
        ratio = c["median_s"] / floor[150]
        out.append(f"- full FGAseg at 150 classes / CLIP floor: **{ratio:.2f}×** "
                   f"(target ≤ 2×: {'met' if ratio <= 2 else 'not met'})")
    def get16(kind: str, n: int) -> Optional[Dict[str, Any]]:
        return next((r for r in rows if r["config"] == kind and r["classes"] == n and r["bf16"]), None)

    a, b = get16("fast+topk (ctrl)", 847), get16("fast+topk (ctrl)", 20)
    if a and b:
        out.append(f"- with bf16 autocast (opt-in), FGAseg + TopK 847 / 20 classes (controlled): "
                   f"**{a['median_s'] / b['median_s']:.2f}×**")
    c, f16 = get16("full", 150), get16("floor", 150)
    if c and 150 in floor:
        extra = f", or {c['median_s'] / f16['median_s']:.2f}× the bf16 floor" if f16 else ""
        out.append(f"- with bf16 autocast (opt-in), full FGAseg at 150 classes: "
                   f"**{c['median_s'] / floor[150]:.2f}× the fp32 floor**{extra}")
    peaks = [r for r in rows if r["classes"] == 847 and not r["bf16"] and r["config"] != "floor"]
    if peaks:
        worst = max(peaks, key=lambda r: r["peak_mib"])
        gib = worst["peak_mib"] / 1024
        out.append(f"- peak memory at 847 classes (worst configuration, {worst['config']}): **{gib:.2f} GiB** "
                   f"(target < 4 GiB: {'met' if gib < 4 else 'not met'})")
    return out


def write_results(text: str, path: Path) -> None:
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    path.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 timed reps instead of 5")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per cell")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, nargs="+", default=list(CLASS_COUNTS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--keep", type=int, default=16, help="classes kept per stage in the controlled TopK")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (floor, full, fast ctrl)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                        help="OMP_WAIT_POLICY of the workers unless already set (PASSIVE: idle OpenMP "
                             "threads sleep instead of spinning, which keeps timings sane on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=None, help="also dump the raw numbers here")
    parser.add_argument("--render", type=Path, default=None,
                        help="re-render --out from a --json dump of an earlier run (no timing)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0
    args.reps = args.reps or (2 if args.quick else 5)
    if args.render:
        dump = json.loads(args.render.read_text())
        saved = dump.get("args", {})
        for key in ("reps", "warmup", "threads", "keep", "omp_wait_policy"):
            if key in saved:
                setattr(args, key, saved[key])
        text = render(dump["rows"], args, dump["meta"])
        print(text)
        write_results(text, args.out)
        return 0
    import torch

    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "cpu": _cpu_name(), "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    for n in args.classes:
        print(f"N = {n} ...", file=sys.stderr, flush=True)
        got = measure(n, args.configs, args)
        for r in got:
            print(f"  {_label(r):62s} {r['median_s']:7.2f} s  peak {r['peak_mib'] / 1024:.2f} GiB  "
                  f"cpu {r['cpu_util']:.2f}  kept {r['kept']}", file=sys.stderr, flush=True)
        rows += got
    meta["load_after"] = os.getloadavg()[0]
    meta["total_s"] = time.perf_counter() - start
    text = render(rows, args, meta)
    print(text)
    write_results(text, args.out)
    if args.json:
        saved = {k: getattr(args, k) for k in ("reps", "warmup", "threads", "keep", "omp_wait_policy")}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "args": saved}, indent=1))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
