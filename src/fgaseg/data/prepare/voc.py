"""PASCAL VOC 2012 val -> ``VOC2012/annotations_detectron2/val`` (VOC-20, background ignored) and
``VOC2012/annotations_detectron2_bg/val`` (VOC-20b, background = class 20).

Needs ``ROOT/VOCdevkit/VOC2012`` with ``ImageSets/Segmentation/val.txt``, ``JPEGImages`` and
``SegmentationClassAug`` (or the original palette PNGs in ``SegmentationClass``). Class k (1..20)
becomes k - 1; 0 (background) becomes 255 (VOC-20) or 20 (VOC-20b); 255 (boundary) stays 255.
As in the official script, a VOC-20 map with no labelled pixel at all is not written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence


from fgaseg.data.prepare.common import (lookup_table, read_array, require_dir, run_jobs,
                                        save_atomic, simple_main)
from fgaseg.errors import DatasetError

_CLASSES = {k: k - 1 for k in range(1, 21)}
LUT_VOC20 = lookup_table({0: 255, **_CLASSES}, 256, 255)
LUT_VOC20B = lookup_table({0: 20, **_CLASSES}, 256, 255)


def convert_pair(source: Path, outputs) -> None:
    label = read_array(source)
    if label.ndim != 2:
        raise ValueError(f"{source}: expected a palette / single-channel label map")
    out20, out20b = outputs
    voc20 = LUT_VOC20[label]
    if (voc20 != 255).any():
        save_atomic(voc20, out20)
    save_atomic(LUT_VOC20B[label], out20b)


def prepare(root: Path, progress: bool = True,
            workers: int = 1) -> None:
    voc = require_dir(Path(root) / "VOCdevkit" / "VOC2012", "extract VOCtrainval_11-May-2012.tar")
    split_file = voc / "ImageSets" / "Segmentation" / "val.txt"
    if not split_file.is_file():
        raise DatasetError(f"{split_file} not found")
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    label_dir = voc / "SegmentationClassAug"
    if not label_dir.is_dir():
        label_dir = require_dir(voc / "SegmentationClass", "no SegmentationClass(Aug) folder")
    jobs = []
    for image_id in ids:
        source = label_dir / f"{image_id}.png"
        if not source.is_file():
            raise DatasetError(f"label map {source} is missing")
        jobs.append((source, voc / "annotations_detectron2_bg" / "val" / f"{image_id}.png"))

    def convert(source: Path, output_bg: Path) -> None:
        convert_pair(source, (voc / "annotations_detectron2" / "val" / output_bg.name, output_bg))

    run_jobs(jobs, convert, "voc2012 val", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return simple_main(__doc__, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
