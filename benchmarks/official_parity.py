"""Official protocol vs the functional reference of the official code, at full size.

    python benchmarks/official_parity.py      # every case below (about an hour on one thread)
    python benchmarks/official_parity.py --classes 847 --decoders fast --modes sliding

A ViT-B/16 FGA-seg (fast / plain decoder, cat fusion) and CAT-Seg with random weights (random
CLIP, every head tensor perturbed) segment one synthetic 320x427 image with the real
VOC-20 / ADE-150 / ADE-847 class names (ADE-847 repeats 10 first synonyms: exact ties). For each
case it prints the largest difference of the final probabilities and the argmax agreement of

- ``official``: ``segment_logits(protocol="official")`` vs ``tests/convert/official_reference``
  (``reference_single_view`` / ``reference_sliding_window``: the official meta-architecture and
  ``Decoder_fast`` inference rewritten from the official code), and
- ``default``: fgaseg's default protocol vs the same reference (what the docs table explains),

and, for the fast decoder, at how many of the three TopK stages the kept positions equal the
reference's. Numbers go to stdout with the machine load (``os.getloadavg``); results of a run
are in official_protocol.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "convert"))
from official_reference import (  # noqa: E402
    CLIP_MEAN,
    _official_normalise,
    reference_single_view,
    reference_sliding_window,
    reference_views_output,
)

_CONSTANT = ("attn_mask", "running_mean", "running_var", "num_batches_tracked")
_VOCABS = {20: "voc20.json", 150: "ade150.json", 847: "ade847.json"}


def class_names(count: int):
    from importlib.resources import files

    return json.loads((files("fgaseg.data") / "classnames" / _VOCABS[count]).read_text())


def build(family: str, decoder: str, seed: int = 0):
    """Random-weight model and its official-named state dict."""
    from fgaseg.convert.official import ours_to_official
    from fgaseg.model import FGASeg
    from fgaseg.model.config import catseg_vitb16_384, fgaseg_vitb16_384

    config = (fgaseg_vitb16_384 if family == "fgaseg" else catseg_vitb16_384)(decoder_mode=decoder)
    torch.manual_seed(seed)
    model = FGASeg(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.startswith("clip.") or name.endswith(_CONSTANT) or not value.is_floating_point():
                continue
            value.add_(torch.randn(value.shape, generator=g) * 0.1)
    return model, {ours_to_official(k): v for k, v in model.state_dict().items()}


def synthetic_image(height: int = 320, width: int = 427, seed: int = 1) -> torch.Tensor:
    """Smooth colour regions (so that classes differ spatially), values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 6, 8, generator=g)
    image = torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    return (image[0] + 0.05 * torch.rand(3, height, width, generator=g)).clamp(0, 1)


def kept_sets_agree(model, official, image, text, head_kw, sliding: bool, count: int) -> str:
    """Fast decoder: do the three TopK stages keep the reference's positions, in the official
    protocol and (where comparable) in the default one?

    Sliding: the five views of ``image``; single view: ``image`` padded with the CLIP mean
    colour to a multiple of 32 (the official input; the default protocol does not pad, here it
    is given the same padded image). The default protocol prunes every view on its own when a
    pre-selection is active, so it is compared only with one view or at most ``pad_len``
    classes."""
    import fgaseg.model.decoder as decoder_module
    import fgaseg.model.official_protocol as protocol_module
    import official_reference as reference_module
    from fgaseg.model.sliding_window import make_views

    if sliding:
        views = make_views(image, model.sliding_plan())
    else:
        H, W = image.shape[-2:]
        views = torch.tensor(CLIP_MEAN).view(3, 1, 1).expand(3, H + -H % 32, W + -W % 32).clone()
        views[:, :H, :W] = image
        views = views[None]
    ours, ref, default = [], [], []
    originals = (protocol_module._valid_mask, reference_module.reference_valid_idx, decoder_module.keep_indices)
    protocol_module._valid_mask = lambda aux, k, ids: ours.append(originals[0](aux, k, ids)) or ours[-1]
    reference_module.reference_valid_idx = lambda aux, k: ref.append(originals[1](aux, k)) or ref[-1]
    decoder_module.keep_indices = lambda aux, k, first=None: default.append(originals[2](aux, k, first)) or default[-1]
    try:
        protocol_module.official_head_scores(model, views, text, 16, None)
        reference_views_output(official, _official_normalise(views * 255), text, **head_kw)
        model._infer_low(views, text, 16, None)
    finally:
        protocol_module._valid_mask, reference_module.reference_valid_idx, decoder_module.keep_indices = originals
    ref_sets = [r[0].nonzero().flatten().tolist() for r in ref]
    official_same = [o.nonzero().flatten().tolist() == r for o, r in zip(ours, ref_sets)]
    text_out = (f"reference keeps {[len(r) for r in ref_sets]} at the 3 stages; official: "
                f"{sum(official_same)}/3 stages identical")
    if not sliding or count <= 256:
        default_same = [d.tolist() == r for d, r in zip(default, ref_sets)]
        text_out += f", default: {sum(default_same)}/3"
    return text_out


def run_case(model, official, family, decoder, count, sliding, image):
    names = class_names(count)
    head_kw = dict(family=family, fast=decoder == "fast", resolution=384, guidance_layers=(3, 7), p2t_heads=8,
                   kernel=3, num_layers=2, pad_len=256, window=12, heads=4)
    if decoder == "fast":
        head_kw["topk"] = 16
    else:
        head_kw["fusion"] = "cat"
    size = tuple(image.shape[-2:])
    with torch.no_grad():
        text = model.encode_classes(names)
        start = time.perf_counter()
        ours = model.segment_logits(image[None], names, sliding=sliding, protocol="official")[0].sigmoid()
        seconds = time.perf_counter() - start
        if sliding:
            ref = reference_sliding_window(official, image, text, out_size=size, view_batch=1, **head_kw)
        else:
            ref = reference_single_view(official, image, text, out_size=size, **head_kw)
        err = (ours - ref).abs().max().item()
        agree = (ours.argmax(0) == ref.argmax(0)).float().mean().item()
        del ours
        default = model.segment_logits(image[None], names, sliding=sliding)[0].sigmoid()
        d_err = (default - ref).abs().max().item()
        d_agree = (default.argmax(0) == ref.argmax(0)).float().mean().item()
        del default
        extra = kept_sets_agree(model, official, image, text, head_kw, sliding, count) if decoder == "fast" else ""
    mode = "sliding" if sliding else "single"
    print(f"| {family} {decoder} | {count} | {mode} | {err:.2e} | {100 * agree:.3f} % | {d_err:.2e} | "
          f"{100 * d_agree:.2f} % | {seconds:.1f} s | {extra} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[20, 150, 847], choices=[20, 150, 847])
    parser.add_argument("--decoders", nargs="+", default=["fast", "plain", "catseg"],
                        choices=["fast", "plain", "catseg"])
    parser.add_argument("--image-seeds", type=int, nargs="+", default=[1], help="one image per seed")
    parser.add_argument("--modes", nargs="+", default=["single", "sliding"], choices=["single", "sliding"])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load: {os.getloadavg()}")
    print("| model | T | view | official: max |dp| | official: argmax agree | default: max |dp| | "
          "default: argmax agree | official time | fast: kept classes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for decoder in args.decoders:
        family, dec = ("catseg", "plain") if decoder == "catseg" else ("fgaseg", decoder)
        model, official = build(family, dec)
        for count in args.classes:
            for mode in args.modes:
                for seed in args.image_seeds:
                    run_case(model, official, family, dec, count, mode == "sliding", synthetic_image(seed=seed))
        del model, official
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
