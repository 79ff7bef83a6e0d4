"""Post-processing time and peak memory of `predict()` with many classes on a large photo
(issue #16.1: 2000 classes on 3000x2000 took 284 s and 3.0 GB; target <= 2 s and <= 2 GiB).

    python benchmarks/postprocess.py                      # 2000 classes, 3000x2000, real TopK
    python benchmarks/postprocess.py --sliding            # the sliding-window protocol
    python benchmarks/postprocess.py --keep 16            # TopK keeps 16 classes per stage

Protocol: FGAseg ViT-B/16 preset (fast decoder, TopK 16) with random seeded weights, fp32,
``--threads`` intra-op threads; a seeded synthetic JPEG (smooth colour regions) segmented by
``fgaseg.predict.predict`` with the default ``max_side`` 640, run in this process alone so
``ru_maxrss`` is the whole run's peak (weights, text embeddings, image, labels, scores).
With random weights the TopK aux heads are not confident and keep far more classes than a
trained model would; ``--keep N`` forces "keep the N best" at each stage instead, as
``speed.py``'s controlled configuration does. Prints one line per measure; the numbers and
the machine load go into ``benchmarks/postprocess.md`` by hand.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed_worker import KeepRecorder  # noqa: E402


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): a few smooth colour regions with mild noise, like a real photo."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    weight = np.zeros((height, width), np.float32)
    for _ in range(12):
        cy, cx = rng.random() * height, rng.random() * width
        radius = (0.1 + 0.3 * rng.random()) * max(height, width)
        w = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius ** 2)) ** 4
        image += w[..., None] * rng.random(3)
        weight += w
    image /= np.maximum(weight, 1e-6)[..., None]
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=2000)
    parser.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--sliding", action="store_true")
    parser.add_argument("--keep", type=int, default=None,
                        help="force TopK to keep this many classes per stage")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from fgaseg.model import FGASeg, fgaseg_vitb16_384
    from fgaseg.predict import predict

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        Image.fromarray(synthetic_photo(width, height)).save(photo, quality=90)
        torch.manual_seed(0)
        model = FGASeg(fgaseg_vitb16_384()).eval()
        if args.keep is not None:
            import fgaseg.model.decoder as decoder_module

            decoder_module.keep_indices = KeepRecorder(decoder_module.keep_indices, args.keep)
        names = [f"object number {i}" for i in range(args.classes)]
        started = time.perf_counter()
        with torch.inference_mode():
            model.encode_classes(names)  # cached: not part of the timings below
        text_s = time.perf_counter() - started
        result = predict(model, photo, names, sliding=args.sliding)
        _ = result.score_maps([names[0], names[-1]])  # on-demand scores at full size
        peak = peak_gib()

    print(f"setup: {args.classes} classes, {width}x{height} JPEG, inference at "
          f"{result.inference_size[0]}x{result.inference_size[1]}, sliding={args.sliding}, "
          f"keep={args.keep or 'TopK 16 rule'}, threads={args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"text encoding (once per class list): {text_s:.2f} s")
    for stage in ("load", "inference", "postprocess"):
        print(f"{stage}: {result.timings[stage]:.2f} s")
    print(f"score maps stored: {result.class_scores.values.shape[0]} of {args.classes} classes "
          f"({result.class_scores.values.numel() * 4 / 2 ** 20:.0f} MiB)")
    print(f"peak RSS: {peak:.2f} GiB")
    print(f"targets: postprocess <= 2 s: {'met' if result.timings['postprocess'] <= 2 else 'NOT met'}; "
          f"peak RSS <= 2 GiB: {'met' if peak <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
