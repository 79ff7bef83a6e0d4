"""`fgaseg convert`: turn an official CAT-Seg / FGA-seg detectron2 checkpoint into an fgaseg folder.

The folder (``config.json`` + ``model.safetensors``) loads with ``FGASeg.from_pretrained(DIR)``
and ``fgaseg segment --weights DIR``. The architecture (ViT-B/16 or ViT-L/14@336px, fast or
plain decoder, fusion, P2Tformer layers, LCS kernel, prompt templates) is read from the
checkpoint itself. Exit codes: 0 done, 2 unreadable / foreign / incomplete checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fgaseg.commands.outputs import add_overwrite_argument, refuse_existing
from fgaseg.errors import ConfigError

HELP = "convert an official CAT-Seg / FGA-seg detectron2 checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="official model_final.pth / .pkl (detectron2 format, CLIP included), "
                             "or a published name to download: catseg-vitb16, catseg-vitl14-336")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for config.json + model.safetensors")
    add_overwrite_argument(parser, "the model in DIR if it already holds one")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow Python objects besides tensors in the file (only for files "
                             "from a source you trust; unpickling can run code)")


def run(args: argparse.Namespace) -> int:
    from fgaseg.convert.official import convert_official_model_dict, load_official_model_dict
    from fgaseg.convert.published import fetch_published, published_checkpoint
    from fgaseg.model import FGASeg

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    if not args.overwrite:
        refuse_existing([out_dir / "model.safetensors", out_dir / "config.json"], "--out")
    started = time.perf_counter()
    source = Path(args.checkpoint)
    if not source.exists() and published_checkpoint(args.checkpoint) is not None:
        source = fetch_published(args.checkpoint)
    official = load_official_model_dict(source, allow_pickle=args.allow_pickle)
    arch, config, state = convert_official_model_dict(official)
    print(f"checkpoint: {arch.describe()} ({len(state)} tensors)")
    # only the state dict is written: build without random initialisation (meta device, then
    # uninitialised CPU memory) and fill every persistent tensor from the checkpoint
    import torch

    with torch.device("meta"):
        model = FGASeg(config)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    del official, state
    model.save_pretrained(out_dir)
    print(f"wrote {out_dir} in {time.perf_counter() - started:.1f} s; run it with: "
          f"fgaseg segment IMAGE --weights {out_dir} --classes \"cat, grass, sky\" --out results")
    return 0
