"""Reading images and label maps from disk as tensors.

Images become float ``(3, H, W)`` RGB in ``[0, 1]``. Label maps become int64 ``(H, W)``: 8-bit
PNG (mode ``L`` or palette ``P``, the palette index is the class), 16-bit PNG / TIFF (Pillow
mode ``I;16``, used by ADE-847 and PC-459 whose ids exceed 255) and 32-bit mode ``I``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

from fgaseg.errors import DatasetError, reason

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: Union[str, Path]) -> torch.Tensor:
    """RGB image file -> float ``(3, H, W)`` in ``[0, 1]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot read image {path}: {reason(exc)}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_label_array(path: Union[str, Path]) -> np.ndarray:
    """Label file -> integer numpy array ``(H, W)`` with the stored values (no remapping)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as label:
            if label.mode in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
                array = np.array(label)
            elif label.mode in ("RGB", "RGBA"):
                raise DatasetError(
                    f"label {path} is a colour image; expected class indices (mode L, P or I;16)")
            else:
                array = np.array(label.convert("I"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot read label map {path}: {reason(exc)}") from None
    if array.ndim != 2:
        raise DatasetError(f"label map {path} has shape {array.shape}; expected (H, W)")
    return array


def read_label(path: Union[str, Path]) -> torch.Tensor:
    """Label file -> int64 ``(H, W)`` tensor of the stored values."""
    return torch.from_numpy(read_label_array(path).astype(np.int64))


def write_label(path: Union[str, Path], label: np.ndarray) -> None:
    """Save a label map: uint8 -> PNG, larger ids -> 16-bit (PNG or TIFF by the suffix)."""
    from PIL import Image

    path = Path(path)
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 65535:
            raise ValueError("label ids must fit in 16 bits")
        label = label.astype(np.uint16)
    fmt = "TIFF" if path.suffix.lower() in (".tif", ".tiff") else "PNG"
    Image.fromarray(label).save(path, fmt)
