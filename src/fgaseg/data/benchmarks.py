"""The prepared layouts of the paper's datasets (as the official CAT-Seg / FGA-seg code expects).

``root`` is the folder holding the datasets (detectron2's ``DETECTRON2_DATASETS``):

```
root/
  coco-stuff/images/{train2017,val2017}/*.jpg
  coco-stuff/annotations_detectron2/{train2017,val2017}/*.png        171 classes, 255 ignore
  ADEChallengeData2016/images/validation/*.jpg
  ADEChallengeData2016/annotations_detectron2/validation/*.png       150 classes, 255 ignore
  ADE20K_2021_17_01/images_detectron2/validation/*.jpg
  ADE20K_2021_17_01/annotations_detectron2/validation/*.tif          847 classes, 65535 ignore
  VOCdevkit/VOC2010/JPEGImages/*.jpg
  VOCdevkit/VOC2010/annotations_detectron2/pc59_val/*.png            59 classes, 255 ignore
  VOCdevkit/VOC2010/annotations_detectron2/pc459_val/*.tif           459 classes, >=459 ignore
  VOCdevkit/VOC2012/JPEGImages/*.jpg
  VOCdevkit/VOC2012/annotations_detectron2/val/*.png                 20 classes, background = 255
  VOCdevkit/VOC2012/annotations_detectron2_bg/val/*.png              20 classes + background = 20
```

``python -m fgaseg.data.prepare.<name>`` builds the ``annotations_detectron2`` folders from the
official downloads (docs/datasets.md). ``root`` may also point at the dataset's own folder
(e.g. ``.../ADEChallengeData2016``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from fgaseg.data.datasets import SegmentationDataset
from fgaseg.data.folder import FolderDataset
from fgaseg.data.vocabulary import load_vocabulary
from fgaseg.errors import DatasetError


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a prepared benchmark lives under ``root`` and how it is scored."""

    top: str                      # dataset folder under root
    splits: Dict[str, Tuple[str, str]]  # split -> (image dir, label dir) under top
    vocabulary: str               # names the model is prompted with
    label_ext: str = ".png"
    num_classes: Optional[int] = None       # metric classes if != len(vocabulary)
    background_id: Optional[int] = None     # VOC-20b: predictions >= this become this id
    default_split: str = "val"


BENCHMARKS: Dict[str, BenchmarkSpec] = {
    "coco171": BenchmarkSpec(
        "coco-stuff",
        {"train": ("images/train2017", "annotations_detectron2/train2017"),
         "val": ("images/val2017", "annotations_detectron2/val2017")},
        "coco171", default_split="train"),
    "ade150": BenchmarkSpec(
        "ADEChallengeData2016",
        {"val": ("images/validation", "annotations_detectron2/validation")}, "ade150"),
    "ade847": BenchmarkSpec(
        "ADE20K_2021_17_01",
        {"val": ("images_detectron2/validation", "annotations_detectron2/validation")},
        "ade847", label_ext=".tif"),
    "pc59": BenchmarkSpec(
        "VOCdevkit/VOC2010", {"val": ("JPEGImages", "annotations_detectron2/pc59_val")}, "pc59"),
    "pc459": BenchmarkSpec(
        "VOCdevkit/VOC2010", {"val": ("JPEGImages", "annotations_detectron2/pc459_val")},
        "pc459", label_ext=".tif"),
    "voc20": BenchmarkSpec(
        "VOCdevkit/VOC2012", {"val": ("JPEGImages", "annotations_detectron2/val")}, "voc20"),
    "voc20b": BenchmarkSpec(
        "VOCdevkit/VOC2012", {"val": ("JPEGImages", "annotations_detectron2_bg/val")}, "voc20b",
        num_classes=21, background_id=20),
}
ALIASES = {"coco": "coco171", "coco-stuff": "coco171", "a-150": "ade150", "a-847": "ade847",
           "pc-59": "pc59", "pc-459": "pc459", "pas-20": "voc20", "pas-20b": "voc20b"}


def list_benchmarks() -> List[str]:
    return list(BENCHMARKS)


def _dataset_folder(root: Path, top: str) -> Path:
    if (root / top).is_dir():
        return root / top
    if root.name == Path(top).name:  # root is the dataset folder itself
        return root
    raise DatasetError(f"{top} not found under {root} (see docs/datasets.md for the layout)")


def _background_mapper(background_id: int):
    def map_prediction(prediction: torch.Tensor) -> torch.Tensor:
        return prediction.clamp(max=background_id)  # every non-VOC class counts as background
    return map_prediction


def build_dataset(name: str, root: Union[str, Path], split: Optional[str] = None,
                  vocabulary: Optional[str] = None) -> SegmentationDataset:
    """A benchmark by name (``coco171, ade150, ade847, pc59, pc459, voc20, voc20b``) or
    ``folder`` (the generic format of :class:`~fgaseg.data.folder.FolderDataset`).

    ``vocabulary`` replaces the class names the model is prompted with (same length required
    unless the benchmark has its own metric classes).
    """
    root = Path(root).expanduser()
    key = ALIASES.get(name.lower(), name.lower())
    if key == "folder":
        dataset = FolderDataset(root, split)
    elif key in BENCHMARKS:
        spec = BENCHMARKS[key]
        split = split or spec.default_split
        if split not in spec.splits:
            raise DatasetError(
                f"{key} has no split '{split}' (available: {', '.join(spec.splits)})")
        folder = _dataset_folder(root, spec.top)
        image_dir, label_dir = spec.splits[split]
        names = load_vocabulary(spec.vocabulary)
        metric_names = None
        if spec.background_id is not None:
            metric_names = load_vocabulary("voc20") + ["background"]
        dataset = SegmentationDataset(
            folder / image_dir, folder / label_dir, names, name=key, image_exts=(".jpg",),
            label_exts=(spec.label_ext,), num_classes=spec.num_classes,
            map_prediction=None if spec.background_id is None else _background_mapper(
                spec.background_id),
            metric_class_names=metric_names)
    else:
        raise DatasetError(f"unknown dataset '{name}': use one of "
                           f"{', '.join(list_benchmarks() + ['folder'])}")
    if vocabulary is not None:
        names = load_vocabulary(vocabulary)
        if len(names) != len(dataset.class_names):
            raise DatasetError(f"vocabulary '{vocabulary}' has {len(names)} names but {key} "
                               f"needs {len(dataset.class_names)}")
        dataset.class_names = names
        if key == "folder" or BENCHMARKS[key].background_id is None:
            dataset.metric_class_names = list(names)
    return dataset
