"""PASCAL Context val -> ``VOC2010/annotations_detectron2/pc59_val`` (59 classes, 255 ignore).

Needs ``ROOT/VOCdevkit/VOC2010/trainval_merged.json`` (the Detail API annotations). For every
image of phase "val" the segments are painted in order (later ones on top) with their
category id (ids of the 459-class list), then the 59 evaluated categories are renumbered
0..58 and everything else becomes 255, as the official ``prepare_pascal_context_59.py`` does.
The RLE masks are decoded by :mod:`fgaseg.data.prepare.rle` (no pycocotools needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fgaseg.data.prepare.common import lookup_table, require_dir, run_jobs, save_atomic, simple_main
from fgaseg.data.prepare.rle import decode
from fgaseg.errors import DatasetError

# 459-class ids of the 59 PC-59 classes (with 0 = unlabelled), from the official script
PC59_SOURCE_IDS = sorted([
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162,
    420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72,
    458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115])
LUT = lookup_table({source: (k - 1) % 256 for k, source in enumerate(PC59_SOURCE_IDS)}, 512, 255)


def paint(image_info: dict, segments: list) -> np.ndarray:
    """459-space label map ``(h, w)`` int of one image."""
    mask = np.zeros((int(image_info["height"]), int(image_info["width"])), dtype=np.int64)
    for segment in segments:
        mask[decode(segment["segmentation"]) > 0] = int(segment["category_id"])
    return mask


def prepare(root: Path, progress: bool = True,
            workers: int = 1) -> None:
    voc = require_dir(Path(root) / "VOCdevkit" / "VOC2010", "extract VOCtrainval_03-May-2010.tar")
    json_path = voc / "trainval_merged.json"
    if not json_path.is_file():
        raise DatasetError(f"{json_path} not found (download trainval_merged.json)")
    print("loading annotations ...")
    data = json.loads(json_path.read_text())
    images = {d["image_id"]: d for d in data["images"] if d.get("phase") == "val"}
    segments: dict = {}
    for ann in data["annos_segmentation"]:
        if ann["image_id"] in images:
            segments.setdefault(ann["image_id"], []).append(ann)
    out_dir = voc / "annotations_detectron2" / "pc59_val"
    jobs = [(image_id, out_dir / (Path(info["file_name"]).stem + ".png"))
            for image_id, info in images.items()]

    def convert(image_id, output: Path) -> None:
        mask = paint(images[image_id], segments.get(image_id, []))
        save_atomic(LUT[np.clip(mask, 0, len(LUT) - 1)], output)

    run_jobs(jobs, convert, "pascal context-59 val", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return simple_main(__doc__, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
