"""`fgaseg eval`: mIoU, per-class IoU, fwIoU and pixel accuracy of weights on a benchmark."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fgaseg.commands.outputs import add_overwrite_argument, refuse_existing

HELP = "evaluate weights on a benchmark (mIoU, per-class IoU, fwIoU, pixel acc.)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="coco171, ade150, ade847, pc59, pc459, voc20, voc20b or folder")
    parser.add_argument("--root", default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                        help="folder holding the prepared datasets (default: "
                             "$DETECTRON2_DATASETS or ./datasets); for 'folder' the data folder")
    parser.add_argument("--split", default=None, help="split (default: val; folder: none)")
    parser.add_argument("--weights", required=True,
                        help="FGASeg folder / official checkpoint / hub id; with a training-free "
                             "--method, CLIP weights (file or hub id)")
    parser.add_argument("--method", default="fgaseg",
                        help="fgaseg (default) or a training-free method: clearclip, sclip, "
                             "naclip, maskclip")
    parser.add_argument("--sliding", action="store_true",
                        help="sliding-window inference (the paper's protocol)")
    parser.add_argument("--protocol", choices=["default", "official"], default="default",
                        help="official: reproduce the official code's final scores, quirks "
                             "included (see docs/checkpoints.md); default: fgaseg's")
    parser.add_argument("--topk", type=int, default=None,
                        help="TopK class pruning (default: the model's; 0 = off)")
    parser.add_argument("--vocab", default=None,
                        help="prompt with these class names instead (name or .json/.txt file)")
    parser.add_argument("--min-size", type=int, default=640,
                        help="resize the shortest image side to this first (0 = keep; "
                             "default 640 as detectron2's MIN_SIZE_TEST)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="autocast precision on GPU")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--out", metavar="JSON", help="write the results here")
    parser.add_argument("--save-confusion", metavar="NPY",
                        help="also save the confusion matrix (rows = ground truth) as .npy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_overwrite_argument(parser, "existing --out / --save-confusion files")


def describe_protocol(protocol: str, sliding: bool) -> str:
    """One line naming the scoring protocol of this evaluation."""
    view = "sliding window" if sliding else "single view"
    if protocol == "official":
        return f"official ({view}; the official code's final scores, quirks included)"
    return f"default ({view}; fgaseg's scoring, see docs/checkpoints.md)"


def load_segmenter(method: str, weights: str, device):
    """An object with the Segmenter protocol for ``method`` and ``weights``."""
    from fgaseg.errors import ConfigError

    method = method.lower()
    if method == "fgaseg":
        from fgaseg.model import FGASeg

        return FGASeg.from_pretrained(weights, map_location=device)
    from fgaseg.training_free import METHODS, TrainingFreeSegmenter

    if method.replace("-", "") not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; use fgaseg or one of {', '.join(METHODS)}")
    return TrainingFreeSegmenter.from_clip(weights, device=device, method=method)


def run(args: argparse.Namespace) -> int:
    import torch

    from fgaseg.data.benchmarks import build_dataset
    from fgaseg.eval import EvalSettings, evaluate, format_table, write_json
    from fgaseg.train import distributed as dist_utils

    if not args.overwrite:
        confusion = args.save_confusion
        if confusion and not confusion.endswith(".npy"):
            confusion += ".npy"  # numpy.save adds the suffix
        refuse_existing([Path(p) for p in (args.out, confusion) if p], "--out")
    info = dist_utils.setup(args.device)
    try:
        split = args.split
        if split is None and args.dataset.lower() != "folder":
            split = "val"  # coco171's default split is train
        dataset = build_dataset(args.dataset, args.root, split, args.vocab)
        segmenter = load_segmenter(args.method, args.weights, info.device)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
        settings = EvalSettings(sliding=args.sliding, topk=args.topk,
                                min_size=args.min_size or None, limit=args.limit,
                                amp_dtype=dtype, progress=not args.no_progress,
                                protocol=args.protocol)
        if info.is_main:
            print(f"protocol: {describe_protocol(args.protocol, args.sliding)}")
        results = evaluate(segmenter, dataset, settings)
        matrix = results.pop("confusion_matrix")
        results.update({"method": args.method, "weights": str(args.weights),
                        "split": args.split, "vocabulary": args.vocab})
        if info.is_main:
            print(format_table(results))
            if args.out:
                print(f"wrote {write_json(results, args.out)}")
            if args.save_confusion:
                import numpy as np

                np.save(args.save_confusion, matrix.numpy())
    finally:
        dist_utils.cleanup()
    return 0
