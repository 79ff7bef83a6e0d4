"""Semantic-segmentation datasets: image/label pairs matched by file stem.

Every dataset yields ``(image (3, H, W) float in [0, 1], label (H, W) int64)`` and has
``class_names`` (the names the model is prompted with), ``num_classes`` (the classes the metric
counts), ``ignore_index`` and ``map_prediction`` (identity except for VOC-20b, where every
prediction >= 20 becomes "background" = 20, as the official VOCbEvaluator does).
Stored label values that are ignore markers or ``>= num_classes`` become ``ignore_index``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from fgaseg.data.io import IMAGE_EXTENSIONS, read_image, read_label
from fgaseg.errors import DatasetError

IGNORE_INDEX = 255
LARGE_IGNORE_INDEX = 65535  # for vocabularies where 255 is a real class (ADE-847, PC-459)


def default_ignore_index(num_classes: int) -> int:
    """255 unless 255 is itself a class id."""
    return IGNORE_INDEX if num_classes <= IGNORE_INDEX else LARGE_IGNORE_INDEX


def _files_by_stem(folder: Path, extensions: Sequence[str]) -> dict:
    exts = {e.lower() for e in extensions}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts}


class SegmentationDataset(Dataset):
    """Images in ``image_dir`` paired with label maps in ``label_dir`` by file stem.

    Pairs are taken from the label files (as detectron2's ``load_sem_seg`` does: images
    without a label map are not part of the set). Labels listed in ``ignore_values`` or
    ``>= num_classes`` become ``ignore_index``.
    """

    def __init__(
        self,
        image_dir: Union[str, Path],
        label_dir: Union[str, Path],
        class_names: Sequence[str],
        *,
        name: str = "dataset",
        image_exts: Sequence[str] = IMAGE_EXTENSIONS,
        label_exts: Sequence[str] = (".png",),
        num_classes: Optional[int] = None,
        ignore_index: Optional[int] = None,
        map_prediction: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        metric_class_names: Optional[Sequence[str]] = None,
    ) -> None:
        self.name = name
        self.image_dir, self.label_dir = Path(image_dir), Path(label_dir)
        for folder, what in ((self.image_dir, "image"), (self.label_dir, "label")):
            if not folder.is_dir():
                raise DatasetError(f"{name}: {what} folder not found: {folder}")
        self.class_names: List[str] = list(class_names)
        self.num_classes = int(num_classes if num_classes is not None else len(self.class_names))
        self.metric_class_names: List[str] = list(metric_class_names or self.class_names)
        if len(self.metric_class_names) != self.num_classes:
            raise ValueError("metric_class_names must have num_classes entries")
        self.ignore_index = ignore_index if ignore_index is not None else default_ignore_index(
            self.num_classes)
        self._map_prediction = map_prediction
        images = _files_by_stem(self.image_dir, image_exts)
        labels = _files_by_stem(self.label_dir, label_exts)
        self.files: List[Tuple[Path, Path]] = [(images[s], labels[s]) for s in labels
                                               if s in images]
        missing = len(labels) - len(self.files)
        if not self.files:
            raise DatasetError(
                f"{name}: no image/label pairs in {self.image_dir} and {self.label_dir} "
                f"(found {len(images)} images, {len(labels)} label maps)")
        if missing:
            warnings.warn(f"{name}: {missing} label maps have no image and are skipped")

    def __len__(self) -> int:
        return len(self.files)

    def load_label(self, index: int) -> torch.Tensor:
        """Label map ``(H, W)`` int64 with every non-class value set to ``ignore_index``."""
        label = read_label(self.files[index][1])
        label[(label < 0) | (label >= self.num_classes)] = self.ignore_index
        return label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image = read_image(self.files[index][0])
        label = self.load_label(index)
        if label.shape != image.shape[1:]:
            raise DatasetError(
                f"{self.name}: label {self.files[index][1].name} is {tuple(label.shape)} but its "
                f"image is {tuple(image.shape[1:])}")
        return image, label

    def map_prediction(self, prediction: torch.Tensor) -> torch.Tensor:
        """Argmax over ``class_names`` ``(..., H, W)`` -> ids in ``[0, num_classes)``."""
        return prediction if self._map_prediction is None else self._map_prediction(prediction)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, images={len(self)}, "
                f"classes={self.num_classes}, root={str(self.label_dir)!r})")
