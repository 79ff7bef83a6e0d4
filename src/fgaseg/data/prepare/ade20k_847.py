"""ADE20K-full (ADE20K_2021_17_01) val -> ``images_detectron2`` + ``annotations_detectron2``
(847 classes, 16-bit TIFF, 65535 = ignore).

Needs ``ROOT/ADE20K_2021_17_01`` with ``index_ade20k.pkl`` and ``images/ADE/validation/...``
(each ``X.jpg`` with its ``X_seg.png``). As the official ``prepare_ade20k_full.py``: the object
class of a pixel is ``R // 10 * 256 + G`` of the ``_seg.png``; images whose shorter side exceeds
512 are resized to 512 (bilinear image, nearest label, as OpenCV's INTER_LINEAR / INTER_NEAREST);
the 847 frequent classes are renumbered by ``classnames/ade847_ade20k_ids.json`` (ADE object id
of each train id, taken from the official category table); other ids become 65535.
"""

from __future__ import annotations

import json
import pickle
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from fgaseg.data.prepare.common import read_array, require_dir, run_jobs, save_atomic, simple_main
from fgaseg.errors import DatasetError

MAX_SHORT_SIDE = 512
IGNORE = 65535


def ade_ids() -> list:
    text = resources.files("fgaseg.data").joinpath("classnames", "ade847_ade20k_ids.json")
    return json.loads(text.read_text("utf-8"))


def make_lut() -> np.ndarray:
    ids = ade_ids()
    lut = np.full(max(ids) + 1, IGNORE, dtype=np.uint16)
    lut[np.array(ids)] = np.arange(len(ids), dtype=np.uint16)
    return lut


def target_size(height: int, width: int) -> Optional[Tuple[int, int]]:
    """The official rule: shorter side > 512 -> shorter side 512 (aspect kept)."""
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / float(height) * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / float(width) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def class_mask(seg_rgb: np.ndarray) -> np.ndarray:
    r, g = seg_rgb[:, :, 0].astype(np.int32), seg_rgb[:, :, 1].astype(np.int32)
    return r // 10 * 256 + g


def resize_arrays(image: np.ndarray, label: np.ndarray, size: Tuple[int, int]):
    """Bilinear (no antialiasing, like cv2.INTER_LINEAR) image, nearest label."""
    img = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
    img = img[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    lab = torch.from_numpy(label)[None, None].float()
    lab = F.interpolate(lab, size=size, mode="nearest")[0, 0].to(torch.int64).numpy()
    return img, lab


def convert_one(image_path: Path, outputs, lut: np.ndarray) -> None:
    out_image, out_label = outputs
    image = read_array(image_path)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    seg = read_array(image_path.with_name(image_path.stem + "_seg.png"))
    label = class_mask(seg)
    size = target_size(*image.shape[:2])
    if size is not None:
        image, label = resize_arrays(image, label, size)
    label = np.where(label < len(lut), lut[np.clip(label, 0, len(lut) - 1)], IGNORE)
    save_atomic(np.ascontiguousarray(image), out_image)
    save_atomic(label.astype(np.uint16), out_label)


def prepare(root: Path, progress: bool = True,
            workers: int = 1) -> None:
    base = require_dir(Path(root) / "ADE20K_2021_17_01",
                       "unzip the ADE20K_2021_17_01 download into the root folder")
    index_file = base / "index_ade20k.pkl"
    if not index_file.is_file():
        raise DatasetError(f"{index_file} not found")
    with open(index_file, "rb") as handle:
        index = pickle.load(handle)
    lut = make_lut()
    image_dir = base / "images_detectron2" / "validation"
    label_dir = base / "annotations_detectron2" / "validation"
    jobs = [(Path(root) / folder / name, label_dir / (Path(name).stem + ".tif"))
            for folder, name in zip(index["folder"], index["filename"])
            if name.split("_")[1] == "val"]  # only the validation set is evaluated

    def convert(source: Path, out_label: Path) -> None:
        # the label is written last, so its presence marks a finished pair
        convert_one(source, (image_dir / source.name, out_label), lut)

    run_jobs(jobs, convert, "ade20k-847 val", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return simple_main(__doc__, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
