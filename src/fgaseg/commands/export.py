"""`fgaseg export --onnx OUT.onnx`: a model with a fixed class list and input size as ONNX.

The graph takes ``images (1, 3, H, W)`` float RGB in ``[0, 1]`` and returns ``logits
(1, T, H, W)``; class text embeddings are baked in. After export the ONNX model is run with
onnxruntime and compared with PyTorch (must agree within ``--atol``, default 1e-3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgaseg.commands.outputs import add_overwrite_argument, refuse_existing

HELP = "export a model with a fixed class list to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output file")
    parser.add_argument("--weights", required=True, metavar="PATH_OR_NAME",
                        help="FGAseg weights; with --method training-free a CLIP name or file")
    parser.add_argument("--method", choices=("fgaseg", "training-free"), default="fgaseg")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help='comma-separated class names, e.g. "cat, grass, sky"')
    names.add_argument("--classes-file", metavar="FILE",
                       help="JSON list of names, or a text file with one name per line")
    names.add_argument("--vocab", metavar="NAME", help="a benchmark vocabulary, e.g. ade150")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="fixed input size, e.g. 384x384 (default: the CLIP resolution)")
    parser.add_argument("--sliding", action="store_true",
                        help="export sliding-window inference instead of a single pass")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="torch exporter: dynamo (needs onnxscript; required for FGAseg), "
                             "torchscript, or auto (dynamo when onnxscript is installed)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="allowed onnxruntime vs PyTorch difference (default 1e-3)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the onnxruntime comparison")
    add_overwrite_argument(parser, "an existing OUT.onnx and OUT.onnx.json")


def run(args: argparse.Namespace) -> int:
    from fgaseg.commands.segment import _class_names
    from fgaseg.export.onnx_export import export_onnx
    from fgaseg.predict.loading import load_segmenter

    class_names = _class_names(args)
    if not args.overwrite:
        onnx = Path(args.onnx)
        refuse_existing([onnx, onnx.with_name(onnx.name + ".json")], "--onnx")
    segmenter = load_segmenter(args.weights, args.method, "cpu")
    size = parse_size(args.size) if args.size else default_size(segmenter)
    report = export_onnx(segmenter, class_names, args.onnx, image_size=size,
                         sliding=args.sliding, opset=args.opset, check=not args.no_check,
                         atol=args.atol, exporter=args.exporter)
    check = ("not checked" if report.max_abs_diff is None
             else f"onnxruntime matches PyTorch (max abs diff {report.max_abs_diff:.2e})")
    print(f"wrote {report.path} ({len(class_names)} classes, input 1x3x{size[0]}x{size[1]}); "
          f"{check}", file=sys.stderr)
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """``"384x512"`` -> (384, 512) as (H, W); a single number means square."""
    from fgaseg.errors import ConfigError

    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--size must look like 384x384, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1 or max(values) > 8192:
        raise ConfigError(f"--size must be HxW with sides in 1..8192, got {text!r}")
    return values[0], values[1]


def default_size(segmenter) -> tuple[int, int]:
    """The CLIP input resolution of the segmenter (384 if it cannot be found)."""
    visual = getattr(getattr(segmenter, "clip", None), "visual", None)
    side = int(getattr(visual, "image_resolution", 0) or 384)
    return side, side
