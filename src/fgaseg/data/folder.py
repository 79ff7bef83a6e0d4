"""The generic folder format for your own data.

```
my_data/
  classes.txt         one class name per line; line i (0-based) is class id i
  images/             RGB images (.jpg, .png, ...)
  masks/              8-bit PNG class-index maps with the same file stem; 255 = ignore
```

Optionally with splits: ``my_data/train/{images,masks}``, ``my_data/val/{images,masks}`` and a
shared ``my_data/classes.txt`` (or one per split). ``classes.json`` (a JSON list) may be used
instead of ``classes.txt``. At most 255 classes (ids 0..254).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from fgaseg.data.datasets import IGNORE_INDEX, SegmentationDataset
from fgaseg.data.vocabulary import load_vocabulary
from fgaseg.errors import ClassNamesError, DatasetError


def _find_classes(folders: List[Path]) -> Path:
    for folder in folders:
        for name in ("classes.txt", "classes.json"):
            if (folder / name).is_file():
                return folder / name
    raise DatasetError(f"no classes.txt or classes.json in {folders[0]}")


class FolderDataset(SegmentationDataset):
    """``root[/split]/images`` + ``root[/split]/masks`` + ``classes.txt`` (see module doc)."""

    def __init__(self, root: Union[str, Path], split: Optional[str] = None) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"dataset folder not found: {root}")
        base = root / split if split and (root / split / "images").is_dir() else root
        if split and base is root and not (root / "images").is_dir():
            raise DatasetError(f"{root}: neither {split}/images nor images/ exists")
        try:
            class_names = load_vocabulary(_find_classes([base, root]))
        except ClassNamesError as exc:
            raise DatasetError(str(exc)) from None
        if len(class_names) > IGNORE_INDEX:
            raise DatasetError(f"{root}: the folder format supports at most 255 classes")
        super().__init__(base / "images", base / "masks", class_names, name=root.name,
                         label_exts=(".png",), ignore_index=IGNORE_INDEX)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        from fgaseg.data.io import read_label

        image, label = super().__getitem__(index)
        raw = read_label(self.files[index][1])
        bad = raw[(raw != IGNORE_INDEX) & (raw >= self.num_classes)]
        if bad.numel():
            raise DatasetError(
                f"mask {self.files[index][1].name} holds class id {int(bad.max())} but "
                f"classes.txt lists {self.num_classes} classes")
        return image, label
