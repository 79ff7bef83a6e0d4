"""`fgaseg app`: the Gradio web demo on this machine (needs ``pip install 'fgaseg[demo]'``)."""

from __future__ import annotations

import argparse
import sys

HELP = "start the Gradio web demo (pip install 'fgaseg[demo]')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, metavar="PATH_OR_NAME",
                        help="FGAseg weights (folder, official checkpoint or hub id); "
                             "with --method training-free a CLIP name or file")
    parser.add_argument("--method", choices=("fgaseg", "training-free"), default="fgaseg")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--classes", default=None,
                        help="class names pre-filled in the text box")
    parser.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="downscale longer sides to PX for inference (default 640)")


def run(args: argparse.Namespace) -> int:
    from fgaseg.app.ui import EXAMPLE_CLASSES, build_app, launch, require_gradio
    from fgaseg.errors import ConfigError
    from fgaseg.predict.api import DEFAULT_MAX_SIDE
    from fgaseg.predict.loading import load_segmenter

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    require_gradio()  # fail before loading weights
    segmenter = load_segmenter(args.weights, args.method, args.device)
    demo = build_app(segmenter, default_classes=args.classes or EXAMPLE_CLASSES,
                     max_side=DEFAULT_MAX_SIDE if args.max_side is None else args.max_side)
    print(f"serving on http://{args.host}:{args.port} (Ctrl+C to stop)", file=sys.stderr)
    try:
        launch(demo, args.host, args.port, block=True)
    except OSError as exc:  # port in use, address not available
        raise ConfigError(f"cannot serve on {args.host}:{args.port} ({exc})") from None
    return 0
