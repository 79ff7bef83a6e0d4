"""The synthetic open-vocabulary benchmark end to end (what ``fgaseg demo`` runs).

1. pretrain (or load from cache) a tiny CLIP on image–text pairs of the synthetic world;
2. train FGAseg on segmentation of the seen classes;
3. evaluate mIoU on held-out scenes for seen and unseen classes, argmax over all 72 phrases;
then write ``results.json``, ``results.md`` and overlay PNGs.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from fgaseg.synth.evaluate import evaluate, predict_labels
from fgaseg.synth.pretrain import PretrainConfig, pretrained_tiny_clip, tiny_clip_config
from fgaseg.synth.report import results_table, save_overlays, write_json
from fgaseg.synth.segtrain import SegTrainConfig, train_segmentation
from fgaseg.synth.vocabulary import build_vocabulary
from fgaseg.synth.world import SceneSet, WorldConfig, generate_scenes

SWITCHES = ("use_p2tformer", "use_t2p_loss", "use_gcs", "use_lcs")


@dataclass
class BenchmarkConfig:
    """Everything that defines one benchmark run."""

    world: WorldConfig = field(default_factory=WorldConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    segtrain: SegTrainConfig = field(default_factory=SegTrainConfig)
    model: Dict[str, object] = field(default_factory=dict)  # overrides of the fgaseg_tiny preset
    num_test_scenes: int = 500
    eval_batch_size: int = 16
    eval_chunk_size: int = 72  # classes per head pass at evaluation (all 72 at once is fastest)
    clip_seed: int = 0
    seed: int = 0
    topk_rows: Sequence[int] = ()  # extra evaluations of the trained model with TopK (ablations: 8, 16)
    training_free_rows: Sequence[str] = ("maskclip", "clearclip")
    num_overlays: int = 8
    save_model: bool = False  # also write the trained FGAseg (save_pretrained) to out_dir/model

    def to_dict(self) -> dict:
        return asdict(self)


def demo_config(**changes) -> BenchmarkConfig:
    """The default benchmark (sized for <= 10 min on 2 CPU cores, <= 5 with a cached CLIP)."""
    return dataclasses.replace(BenchmarkConfig(), **changes)


def smoke_config(**changes) -> BenchmarkConfig:
    """A seconds-long run through every stage (tests, ``fgaseg demo --smoke``)."""
    world = WorldConfig(image_size=32)
    clip = tiny_clip_config(image_size=32, width=32, depth=2)
    config = BenchmarkConfig(
        world=world,
        pretrain=PretrainConfig(steps=3, batch_size=16, num_images=64, clip=clip),
        segtrain=SegTrainConfig(steps=2, batch_size=4, classes_per_step=8, num_train_scenes=16, warmup_steps=1),
        model={"hidden_dim": 16, "num_heads": 2, "text_guidance_proj_dim": 16,
               "appearance_guidance_proj_dim": 16, "decoder_guidance_dims": (16, 16),
               "window_size": 2},
        num_test_scenes=8, eval_batch_size=8, topk_rows=(4,), training_free_rows=("maskclip",),
        num_overlays=2,
    )
    return dataclasses.replace(config, **changes)


def build_model(clip, config: BenchmarkConfig, init_from=None, **switches):
    """FGAseg (tiny preset) around a *copy* of ``clip``; ``switches`` override the preset.

    ``init_from`` (a state dict, e.g. the freshly built full model's) pairs initial weights
    across ablation variants: every parameter with the same name and shape is copied from it,
    so variants differ only in the parts they switch, not in the luck of their initialisation.
    """
    from fgaseg.model import FGASeg
    from fgaseg.model.config import fgaseg_tiny

    clip_cfg = clip.config
    overrides = dict(
        clip_config=clip_cfg.to_dict(), image_size=config.world.image_size,
        guidance_layers=(max(0, clip_cfg.vision_layers // 2 - 1), clip_cfg.vision_layers - 2)
        if clip_cfg.vision_layers >= 3 else (0, 0),
        sliding_window_size=config.world.image_size,
        # no padding tokens and no class pre-selection: every phrase reaches the head, so no
        # variant is ranked by its own choice of classes to keep; and the class aggregation sees
        # only real classes, 54 in training and 72 at evaluation. Padded to a fixed length (the
        # official 256 for COCO's 171) the mix of real and padding tokens differs between the
        # two, and one seed in three fell to 12-15 hIoU (docs/synthetic.md, "Fourth session")
        pad_len=0,
    )
    overrides.update(config.model)
    overrides.update(switches)
    torch.manual_seed(config.seed)
    model = FGASeg(fgaseg_tiny(**overrides), clip=copy.deepcopy(clip)).eval()
    if init_from is not None:
        own = model.state_dict()
        shared = {k: v for k, v in init_from.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(shared, strict=False)
    return model


def make_train_set(config: BenchmarkConfig, progress: bool = True) -> SceneSet:
    """Training scenes of the run's seed, containing seen classes only."""
    vocab = build_vocabulary(config.world.split_seed)
    return generate_scenes(
        config.world, config.segtrain.num_train_scenes, config.seed, "train", vocab.seen_ids, vocab,
        progress="world: training scenes" if progress else None,
    )


def make_test_set(config: BenchmarkConfig, progress: bool = True) -> SceneSet:
    """Held-out scenes (all classes); they depend on the world only, not on the run's seed."""
    vocab = build_vocabulary(config.world.split_seed)
    return generate_scenes(config.world, config.num_test_scenes, 0, "test", None, vocab,
                           progress="world: test scenes" if progress else None)


def make_datasets(config: BenchmarkConfig, progress: bool = True) -> Tuple[SceneSet, SceneSet]:
    """Training scenes (seen classes only) and held-out test scenes (all classes)."""
    return make_train_set(config, progress), make_test_set(config, progress)


def _row(name: str, metrics: dict, **extra) -> dict:
    keep = {k: metrics[k] for k in ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU_all", "pixel_acc", "seconds")}
    return {"name": name, **keep, "attributes": metrics.get("attributes", {}), **extra}


def evaluate_variants(
    model, test: SceneSet, config: BenchmarkConfig, progress: bool = True,
) -> List[dict]:
    """The trained model without pruning, with TopK, and (if it has one) its plain decoder path."""
    rows = []
    metrics = evaluate(model, test, config.eval_batch_size, progress, topk=0, chunk_size=config.eval_chunk_size)
    rows.append(_row("FGAseg (trained)", metrics, topk=0, per_class=metrics["per_class"]))
    if getattr(model.config, "decoder_mode", None) == "fast":
        for k in config.topk_rows:
            m = evaluate(model, test, config.eval_batch_size, progress, desc=f"evaluate TopK {k}", topk=k,
                         chunk_size=config.eval_chunk_size)
            rows.append(_row(f"FGAseg, TopK {k} of {test.vocab.num_classes}", m, topk=k))
    return rows


def evaluate_training_free(clip, test: SceneSet, config: BenchmarkConfig, progress: bool = True) -> List[dict]:
    """Training-free dense-CLIP segmentation with the pretrained tiny CLIP (a floor here)."""
    try:
        from fgaseg.training_free import TrainingFreeSegmenter
    except ImportError:
        return []
    from fgaseg.clip import PROMPT_TEMPLATES_SINGLE

    rows = []
    for method in config.training_free_rows:
        segmenter = TrainingFreeSegmenter(clip, method=method, templates=PROMPT_TEMPLATES_SINGLE)
        m = evaluate(segmenter, test, config.eval_batch_size, progress, desc=f"evaluate training-free {method}")
        rows.append(_row(f"training-free tiny CLIP ({method})", m))
    return rows


# seconds per step / per test scene on 2 idle cores (docs/synthetic.md, "Timings"); used only
# to tell a newcomer up front about how long the demo will take
_CLIP_STEP_S, _SEG_STEP_S, _EVAL_SCENE_S, _DATA_S = 0.35, 0.46, 0.065, 14.0


def plan(config: BenchmarkConfig, use_cache: bool = True) -> str:
    """One line: what the demo will run and about how long it takes on 2 idle CPU cores."""
    from fgaseg.synth.pretrain import clip_cache_path

    cached = use_cache and clip_cache_path(config.pretrain, config.world, config.clip_seed).is_file()
    clip_s = 1.0 if cached else config.pretrain.steps * _CLIP_STEP_S + _DATA_S
    seg_s = config.segtrain.steps * _SEG_STEP_S + _DATA_S / 2
    rows = 1 + len(config.topk_rows) + len(config.training_free_rows) * 0.2
    eval_s = config.num_test_scenes * _EVAL_SCENE_S * rows
    clip_part = ("tiny CLIP from cache" if cached
                 else f"pretrain a tiny CLIP ({config.pretrain.steps} steps, ~{clip_s / 60:.0f} min, then cached)")
    return (f"fgaseg demo: {clip_part} -> train FGAseg on seen classes ({config.segtrain.steps} steps, "
            f"~{seg_s / 60:.0f} min) -> evaluate on {config.num_test_scenes} scenes; "
            f"about {(clip_s + seg_s + eval_s) / 60:.0f} min on 2 idle CPU cores")


def run_benchmark(
    config: BenchmarkConfig, out_dir: Optional[Path] = None, use_cache: bool = True,
    progress: bool = True, log: Callable[[str], None] = print,
) -> dict:
    """Run all three stages; write outputs to ``out_dir`` (if given) and return the results."""
    start = time.time()
    timings: Dict[str, float] = {}
    clip, clip_meta = pretrained_tiny_clip(config.pretrain, config.world, config.clip_seed, use_cache, progress, log)
    timings["stage1_clip"] = round(time.time() - start, 1)

    t = time.time()
    train, test = make_datasets(config, progress)
    timings["datasets"] = round(time.time() - t, 1)

    t = time.time()
    model = build_model(clip, config)
    train_stats = train_segmentation(model, train, config.segtrain, seed=config.seed, progress=progress)
    timings["stage2_train"] = round(time.time() - t, 1)
    log(f"stage 2/3: FGAseg trained in {train_stats['seconds']:.0f} s")

    t = time.time()
    rows = evaluate_variants(model, test, config, progress)
    rows += evaluate_training_free(clip, test, config, progress)
    timings["stage3_eval"] = round(time.time() - t, 1)
    timings["total"] = round(time.time() - start, 1)

    results = {
        "benchmark": "fgaseg synthetic open-vocabulary",
        "vocabulary": test.vocab.to_dict(),
        "config": config.to_dict(),
        "model_config": model.config.to_dict(),
        "clip": clip_meta,
        "train": train_stats,
        "rows": rows,
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
        "chance": chance_levels(test.vocab),
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), results, model, test, config)
        log(f"results written to {out_dir}/results.json, results.md and overlays/")
    return results


def write_outputs(out_dir: Path, results: dict, model, test: SceneSet, config: BenchmarkConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    count = min(config.num_overlays, len(test))
    if count:
        preds = predict_labels(model, test, range(count), test.vocab.phrases, topk=0,
                               chunk_size=config.eval_chunk_size)
        results["overlays"] = save_overlays(
            out_dir / "overlays", test.images[:count], test.labels[:count], preds, test.vocab
        )
    results["learning_curves"] = str(save_learning_curves(out_dir / "learning_curves.png", results).name)
    if config.save_model:
        results["model_dir"] = str(model.save_pretrained(out_dir / "model"))
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(markdown_summary(results) + "\n")


def save_learning_curves(path: Path, results: dict) -> Path:
    """Loss vs step of the tiny CLIP and of FGAseg (smoothed over 20 steps) as one PNG."""
    from fgaseg.synth.plot import curve, line_chart

    clip_losses = results["clip"].get("loss_curve", [])
    seg_losses = results["train"].get("loss_curve", [])
    panels = [
        ("stage 1: tiny CLIP contrastive loss" + (" (cached run)" if results["clip"].get("cached") else ""),
         {"loss": curve(clip_losses, 20)}),
        ("stage 2: FGAseg training loss (BCE + aux + T2P)", {"loss": curve(seg_losses, 20)}),
    ]
    return line_chart(panels, path)


def chance_levels(vocab) -> dict:
    """What guessing gives: mIoU of a uniform random label, and accuracy per attribute."""
    from fgaseg.synth.evaluate import attribute_chance

    # a uniform guess over C classes gives a class covering 1/C of the pixels IoU 1/(2C - 1)
    return {"mIoU": 100.0 / (2 * vocab.num_classes - 1), **attribute_chance(vocab.attributes)}


def markdown_summary(results: dict) -> str:
    cfg = results["config"]
    clip = results["clip"]
    zs = clip.get("zero_shot", {})
    chance = results.get("chance", {})
    lines = [
        "# Synthetic open-vocabulary benchmark",
        "",
        f"{cfg['world']['image_size']}² scenes, 72 phrases (54 seen / 18 unseen compositions), "
        f"{cfg['num_test_scenes']} held-out test scenes, argmax over all 72 phrases, background ignored.",
        f"Tiny CLIP: {cfg['pretrain']['steps']} contrastive steps"
        + (" (loaded from cache)" if clip.get("cached") else "")
        + (f"; zero-shot accuracy on single objects: seen {zs['seen']*100:.1f}%, unseen "
           f"{zs['unseen']*100:.1f}%; colour {zs['colour']*100:.1f}%, pattern {zs['pattern']*100:.1f}%, "
           f"shape {zs['shape']*100:.1f}%" if zs else "")
        + f". FGAseg: {cfg['segtrain']['steps']} steps on seen classes, seed {cfg['seed']}.",
        "",
        results_table(results["rows"]),
        "",
        "How to read this:",
        "",
        "- **mIoU seen / unseen**: mean intersection-over-union over the 54 phrases FGAseg was trained "
        "on / the 18 it never saw in segmentation training (every word of an unseen phrase was seen, "
        "in other combinations). Unseen close to seen means the model composes words it knows: "
        "open-vocabulary segmentation.",
        "- **hIoU**: harmonic mean of the two, 2·seen·unseen / (seen + unseen); it is high only when both are.",
        "- **colour / pattern / shape %**: share of object pixels whose predicted phrase has the right "
        "colour / pattern / shape, whatever the other two words.",
    ]
    if chance:
        lines.append(
            f"- **Chance**: a uniform random label scores ≈ {chance['mIoU']:.1f} mIoU; guessing an "
            f"attribute is right {chance['colour']:.0f}% (colour), {chance['pattern']:.0f}% (pattern), "
            f"{chance['shape']:.0f}% (shape) of the time."
        )
    lines += [
        "- `overlays/`: input | ground truth | prediction for the first test scenes (`*` = unseen class); "
        "`learning_curves.png`: the training losses of both stages.",
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in results["timings_s"].items()),
    ]
    return "\n".join(lines)
