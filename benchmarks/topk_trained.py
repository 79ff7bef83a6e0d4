"""TopK class selection with *trained* weights: what the real rule keeps, and what it costs.

    python benchmarks/topk_trained.py              # ~4 min on 2 cores with a cached tiny CLIP
    python benchmarks/topk_trained.py --steps 600  # a longer-trained (more confident) model

``benchmarks/speed.py`` uses random weights, with which the TopK rule ("keep the classes in
some pixel's top-K") keeps almost everything. No trained ViT-B/16 FGAseg can be obtained here,
so this script trains the one model we can train on this CPU, FGAseg on the synthetic benchmark
(``fgaseg demo``'s tiny CLIP and budget, ``pad_len`` 72 so that all 72 phrases reach the head
as the official ``pad_len`` 256 lets ADE-150 through), and then evaluates held-out scenes one
image at a time (as TopK does) with K = 0 (no pruning), 16 and 8. For each K it reports mIoU,
time per image and how many classes the real rule kept at each of its three stages. Results go
to ``benchmarks/topk_trained.md``. The kept fractions are for this model and this world; a
real model on real images keeps a different share.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed_worker import KeepRecorder  # noqa: E402


def evaluate_with_kept(model, test, k: int, classes: int) -> Dict[str, Any]:
    """mIoU, seconds per image and per-stage kept counts of one TopK setting, batch 1."""
    import fgaseg.model.decoder as decoder_module
    from fgaseg.synth.evaluate import evaluate

    original = decoder_module.keep_indices
    recorder = KeepRecorder(original, forced_keep=None)
    decoder_module.keep_indices = recorder
    start = time.perf_counter()
    try:
        # batch 1 for every K, so that the times compare (TopK prunes per image anyway)
        metrics = evaluate(model, test, 1, progress=False, topk=k, chunk_size=classes)
    finally:
        decoder_module.keep_indices = original
    seconds = time.perf_counter() - start
    kept = np.array(recorder.counts, dtype=np.int64).reshape(-1, 3) if recorder.counts else None
    return {"k": k, "metrics": metrics, "s_per_image": seconds / len(test), "kept": kept}


def render(rows: List[Dict[str, Any]], args: argparse.Namespace, meta: Dict[str, Any]) -> str:
    base = rows[0]
    lines = [
        "# TopK with trained weights (`python benchmarks/topk_trained.py`)", "",
        f"Run {meta['date']}, torch {torch.__version__}, {torch.get_num_threads()} threads. FGAseg "
        f"(tiny preset, `pad_len` {args.pad_len}, fast decoder) trained {args.steps} steps on the "
        f"synthetic benchmark (seed {args.seed}, {meta['train_s']:.0f} s), evaluated on {args.scenes} "
        f"held-out {meta['image_size']}² scenes with all {meta['classes']} phrases, one image at a "
        f"time. Kept = classes surviving each stage of the real TopK rule (of {meta['classes']}): "
        f"mean / median / max over images.", "",
        "| K | mIoU seen | unseen | hIoU | all | Δ all vs K = 0 | s / image | × K = 0 | "
        "kept stage 0 | kept stage 1 | kept stage 2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        cells = ["", "", ""]
        if r["kept"] is not None:
            cells = [f"{c.mean():.1f} / {statistics.median(c.tolist()):.0f} / {c.max()}" for c in r["kept"].T]
        lines.append(
            f"| {r['k'] or 'none'} | {m['mIoU_seen']:.1f} | {m['mIoU_unseen']:.1f} | {m['hIoU']:.1f} | "
            f"{m['mIoU_all']:.1f} | {m['mIoU_all'] - base['metrics']['mIoU_all']:+.2f} | "
            f"{r['s_per_image'] * 1000:.1f} ms | {r['s_per_image'] / base['s_per_image']:.2f} | "
            + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="segmentation training steps (demo: 300)")
    parser.add_argument("--scenes", type=int, default=200, help="held-out scenes to evaluate")
    parser.add_argument("--pad-len", type=int, default=72, help="class padding / pre-selection cap")
    parser.add_argument("--topk", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "topk_trained.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from fgaseg.synth.benchmark import build_model, demo_config, make_datasets
    from fgaseg.synth.pretrain import pretrained_tiny_clip
    from fgaseg.synth.segtrain import train_segmentation

    config = demo_config(seed=args.seed, num_test_scenes=args.scenes, model={"pad_len": args.pad_len})
    config = dataclasses.replace(config, segtrain=dataclasses.replace(config.segtrain, steps=args.steps))
    clip, _ = pretrained_tiny_clip(config.pretrain, config.world, config.clip_seed, True, True, print)
    train, test = make_datasets(config, progress=False)
    model = build_model(clip, config)
    start = time.time()
    train_segmentation(model, train, config.segtrain, seed=config.seed, progress=True)
    classes = test.vocab.num_classes
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train_s": time.time() - start,
            "classes": classes, "image_size": config.world.image_size}
    rows = [evaluate_with_kept(model, test, k, classes) for k in [0] + list(args.topk)]
    text = render(rows, args, meta)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
