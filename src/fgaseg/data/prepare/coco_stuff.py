"""COCO-Stuff-164k -> ``coco-stuff/annotations_detectron2/{train2017,val2017}`` (171 classes).

Needs ``ROOT/coco-stuff/images/{train2017,val2017}`` (COCO 2017 images) and
``ROOT/coco-stuff/annotations/{train2017,val2017}`` (``stuffthingmaps_trainval2017.zip``).
The stuff+thing maps store COCO category id - 1 (0..181, 255 unlabelled); the 11 ids COCO never
uses are dropped and the other 171 renumbered 0..170 in order (the official
``prepare_coco_stuff.py`` mapping); everything else becomes 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fgaseg.data.prepare.common import (base_parser, lookup_table, main_wrapper, read_array,
                                        require_dir, run_jobs, save_atomic)

UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # 0-based COCO ids without a class
TRAIN_IDS = [i for i in range(182) if i not in UNUSED_IDS]  # stuffthingmap id of train id k
LUT = lookup_table({source: k for k, source in enumerate(TRAIN_IDS)}, 256, 255)


def convert(source: Path, output: Path) -> None:
    label = read_array(source)
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{source}: expected an 8-bit single-channel map")
    save_atomic(LUT[label], output)


def prepare(root: Path, splits: Sequence[str] = ("train2017", "val2017"),
            progress: bool = True,
            workers: int = 1) -> None:
    base = Path(root) / "coco-stuff"
    for split in splits:
        source_dir = require_dir(
            base / "annotations" / split,
            "unzip stuffthingmaps_trainval2017.zip into coco-stuff/annotations")
        output_dir = base / "annotations_detectron2" / split
        jobs = [(p, output_dir / p.name) for p in sorted(source_dir.glob("*.png"))]
        run_jobs(jobs, convert, f"coco-stuff {split}", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["train2017", "val2017"])
    return main_wrapper(
        lambda a: prepare(Path(a.root), a.splits, not a.no_progress, a.workers), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
