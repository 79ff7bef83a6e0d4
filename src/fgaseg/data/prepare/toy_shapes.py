"""A small random-shapes dataset in the generic folder format (for smoke tests and the CPU config).

``python -m fgaseg.data.prepare.toy_shapes OUT [--images 32 --size 96]`` writes
``OUT/{train,val}/{images,masks}`` and ``OUT/classes.txt``: coloured rectangles and discs on a
textured background; each shape class has its own colour so a tiny model can learn it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fgaseg.data.prepare.common import base_parser, main_wrapper, save_atomic

CLASSES = ["background", "red square", "green disc", "blue square", "yellow disc"]
COLORS = np.array([[90, 90, 90], [220, 40, 40], [40, 200, 60], [50, 70, 230], [230, 220, 40]])


def make_sample(rng: np.random.Generator, size: int, ignore_border: bool = True):
    """One ``(image (size, size, 3) uint8, mask (size, size) uint8)`` pair."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(1, len(CLASSES)))
        r = int(rng.integers(size // 8, size // 3))
        cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
        if cls in (2, 4):
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            inside = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        mask[inside] = cls
    image = COLORS[mask].astype(np.float32) + rng.normal(0, 12, (size, size, 3))
    if ignore_border:
        mask[:2, :] = 255  # a thin ignore band exercises ignore handling
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_toy_dataset(out: Path, images: int = 32, size: int = 96, val_images: int = 8,
                      seed: int = 0, progress: bool = False) -> Path:
    """Write the dataset (skipping files that exist); returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(seed)
    todo = [("train", i) for i in range(images)] + [("val", i) for i in range(val_images)]
    iterator = todo
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(todo, desc="toy shapes", unit="img")
    for split, index in iterator:
        image, mask = make_sample(rng, size)
        stem = f"{split}_{index:05d}"
        if not (out / split / "masks" / f"{stem}.png").exists():
            save_atomic(image, out / split / "images" / f"{stem}.png")
            save_atomic(mask, out / split / "masks" / f"{stem}.png")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], default_root="toy_shapes")
    parser.add_argument("--images", type=int, default=64, help="training images")
    parser.add_argument("--val-images", type=int, default=16, help="validation images")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)

    def run(args):
        write_toy_dataset(Path(args.root), args.images, args.size, args.val_images, args.seed,
                          progress=not args.no_progress)
        print(f"wrote {args.root}")

    return main_wrapper(run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
