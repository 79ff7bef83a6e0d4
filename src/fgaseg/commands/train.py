"""`fgaseg train CONFIG`: train FGAseg from a YAML config, in one process or under torchrun."""

from __future__ import annotations

import argparse

from fgaseg.commands.outputs import add_overwrite_argument

HELP = "train FGAseg from a YAML config (single process or torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config, e.g. configs/fgaseg_vitb16_384.yaml")
    parser.add_argument("--out", metavar="DIR", help="output folder (overrides out_dir)")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="continue from OUT/checkpoints/last.pt (or the given checkpoint "
                             "file / run folder); starts fresh if OUT has no checkpoint yet")
    add_overwrite_argument(parser, "an earlier run in OUT: its checkpoints, final/ and logs "
                                   "are deleted first (--resume continues it instead)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config entries, e.g. optim.lr=1e-4 max_iters=1000 "
                             "data.root=/data")
    parser.epilog = ("multi-GPU / multi-node: torchrun --nproc_per_node=N -m fgaseg train CONFIG; "
                     "batch_size is the global batch, split over processes and grad_accum")


def run(args: argparse.Namespace) -> int:
    from fgaseg.train.config import load_config
    from fgaseg.train.loop.run import run_training

    overrides = list(args.opts)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    config = load_config(args.config, overrides)
    result = run_training(config, resume=args.resume, device=args.device, force=args.overwrite)
    if result.checkpoint is not None:
        print(f"done: {result.step} steps ({result.skipped_steps} skipped); "
              f"checkpoint {result.checkpoint}")
    return 0
