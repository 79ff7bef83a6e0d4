"""The `fgaseg` command line. Each sub-command lives in `fgaseg.commands.<name>`.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors a user can cause (``FGASegError``) are printed as one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Optional, Sequence

from fgaseg import __version__
from fgaseg.errors import FGASegError, reason

# name -> module; modules are imported only when their command runs (startup stays fast).
COMMANDS = {
    "segment": "fgaseg.commands.segment",
    "demo": "fgaseg.commands.demo",
    "train": "fgaseg.commands.train",
    "eval": "fgaseg.commands.eval",
    "convert": "fgaseg.commands.convert",
    "export": "fgaseg.commands.export",
    "app": "fgaseg.commands.app",
    "encode": "fgaseg.commands.encode",
}

# one-line help per command, kept here so `fgaseg --help` needs no heavy imports
HELP = {
    "segment": "segment images with a class list (trained FGAseg or training-free CLIP)",
    "demo": "synthetic open-vocabulary benchmark: pretrain tiny CLIP, train FGAseg, evaluate",
    "train": "train FGAseg from a YAML config (single process or torchrun)",
    "eval": "evaluate weights on a benchmark (mIoU, per-class IoU, fwIoU, pixel acc.)",
    "convert": "convert an official CAT-Seg / FGA-seg detectron2 checkpoint",
    "export": "export a model with a fixed class list to ONNX",
    "app": "start the Gradio web demo (pip install 'fgaseg[demo]')",
    "encode": "encode an image and class names with CLIP and print their similarities",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgaseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fgaseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        sub.add_parser(name, help=HELP[name], add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # handles --help / --version / unknown command
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    name, rest = argv[0], argv[1:]
    try:
        module = import_module(COMMANDS[name])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("fgaseg."):
            print(f"error: command '{name}' is not available in this build", file=sys.stderr)
            return 2
        raise
    sub = argparse.ArgumentParser(prog=f"fgaseg {name}", description=module.HELP)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except FGASegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine's, not the user's input: disk full, a folder gone, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"failed: {where}{exc.strerror or reason(exc)}", file=sys.stderr)
        return 1
