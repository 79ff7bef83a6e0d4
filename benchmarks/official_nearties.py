"""Is the fast decoder's TopK at 847 classes reproducible at all? The official rule against itself.

    python benchmarks/official_nearties.py               # images 1-4, 1 and 2 threads (~8 min)
    python benchmarks/official_nearties.py --float64     # + the same in float64 (~8 min more)

With random weights the 847-class single view of `official_parity.py` kept a different class at
TopK stage 1 in fgaseg's official protocol than in the functional reference of the official code
on 2 of 4 images (final probabilities 0.22 apart). This script runs, for each image, fgaseg's
``protocol="official"`` and the reference (``tests/convert/official_reference.py``) at 1 and at
2 threads, and prints the largest difference of the final probabilities and whether the kept
classes of the three TopK stages are equal, for every pair: fgaseg vs the reference at the same
thread count, and the reference at 1 thread vs the reference at 2 threads (the official code
against itself: the same computation, only the GEMMs' summation order differs). ``--float64``
also runs both sides in float64, where float32 near-ties no longer decide the ranking.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_parity import build, class_names, synthetic_image  # noqa: E402

import official_reference as reference_module  # noqa: E402  (official_parity put it on the path)

HEAD = dict(family="fgaseg", fast=True, resolution=384, guidance_layers=(3, 7), p2t_heads=8, kernel=3,
            num_layers=2, pad_len=256, window=12, heads=4, topk=16)


def run(model, official, names, image, text):
    """fgaseg official and reference probabilities ``(T, H, W)`` and their kept positions per stage."""
    import fgaseg.model.official_protocol as protocol_module

    ours, ref = [], []
    originals = (protocol_module._valid_mask, reference_module.reference_valid_idx)
    protocol_module._valid_mask = lambda aux, k, ids: ours.append(originals[0](aux, k, ids)) or ours[-1]
    reference_module.reference_valid_idx = lambda aux, k: ref.append(originals[1](aux, k)) or ref[-1]
    try:
        p_ours = model.segment_logits(image[None], names, sliding=False, protocol="official")[0].sigmoid()
        p_ref = reference_module.reference_single_view(official, image, text, out_size=tuple(image.shape[-2:]),
                                                       **HEAD)
    finally:
        protocol_module._valid_mask, reference_module.reference_valid_idx = originals
    kept_ours = [m.nonzero().flatten().tolist() for m in ours]
    kept_ref = [m[0].nonzero().flatten().tolist() for m in ref]
    return {"ours": (p_ours.double(), kept_ours), "ref": (p_ref.double(), kept_ref)}


def compare(a, b) -> str:
    (pa, ka), (pb, kb) = a, b
    same = sum(x == y for x, y in zip(ka, kb))
    return f"{(pa - pb).abs().max().item():.1e}, {same}/3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--float64", action="store_true", help="also run both sides in float64")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    names = class_names(847)
    model, official = build("fgaseg", "fast")
    text = model.encode_classes(names)
    print(f"torch {torch.__version__}, load {os.getloadavg()}; FGA-seg fast, 847 ADE names, single view, "
          "random weights. Cells: max |dp| of the final probabilities, TopK stages with equal kept sets")
    print("| image | fgaseg vs reference, 1 thread | fgaseg vs reference, 2 threads | reference 1 vs 2 threads "
          "| kept per stage (reference, 1 thread) |" + (" fgaseg vs reference, float64 |" if args.float64 else ""))
    print("|---|---|---|---|---|" + ("---|" if args.float64 else ""))
    if args.float64:
        model64 = build("fgaseg", "fast")[0].double()
        official64 = {k: v.double() if v.is_floating_point() else v for k, v in official.items()}
        torch.set_default_dtype(torch.float64)
        text64 = model64.encode_classes(names)
        torch.set_default_dtype(torch.float32)
    for seed in args.image_seeds:
        image = synthetic_image(seed=seed)
        out = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out[threads] = run(model, official, names, image, text)
        row = (f"| {seed} | {compare(out[1]['ours'], out[1]['ref'])} | {compare(out[2]['ours'], out[2]['ref'])} | "
               f"{compare(out[1]['ref'], out[2]['ref'])} | {[len(k) for k in out[1]['ref'][1]]} |")
        if args.float64:
            torch.set_num_threads(1)
            torch.set_default_dtype(torch.float64)  # the constants both sides create (fills, positions)
            try:
                o64 = run(model64, official64, names, image.double(), text64)
            finally:
                torch.set_default_dtype(torch.float32)
            row += f" {compare(o64['ours'], o64['ref'])} |"
        print(row, flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
