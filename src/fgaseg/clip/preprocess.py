"""CPU image preprocessing for CLIP without torchvision: to tensor, resize, crop/pad, normalise.

Images are float tensors ``(3, H, W)`` with RGB in ``[0, 1]`` until :func:`normalize`.
Resizing is bicubic with antialiasing (close to, not bit-identical with, PIL's bicubic that
OpenAI's torchvision pipeline uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from fgaseg.errors import ImageError

CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

ImageLike = Union[str, Path, "PIL.Image.Image", np.ndarray, torch.Tensor]  # noqa: F821


def load_image(path: Union[str, Path]):
    """Open an image file as an RGB PIL image; ImageError if missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None


def to_tensor(image: ImageLike) -> torch.Tensor:
    """A path, PIL image, ``(H, W[, C])`` numpy array or ``(3, H, W)`` tensor -> float ``(3, H, W)``.

    uint8 data is scaled to ``[0, 1]``; float data is taken as already in ``[0, 1]``.
    Grayscale is repeated to RGB, an alpha channel dropped.
    """
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        if not hasattr(image, "convert"):
            raise ImageError(f"unsupported image type {type(image).__name__}")
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
            raise ImageError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got {array.shape}")
        tensor = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)
    else:
        tensor = image.detach().cpu()
        if tensor.dim() == 2:
            tensor = tensor[None]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ImageError(f"expected a (3, H, W) image tensor, got {tuple(tensor.shape)}")
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ImageError("image is empty")
    if tensor.shape[0] == 1:
        tensor = tensor.repeat(3, 1, 1)
    tensor = tensor[:3]
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if not tensor.is_floating_point():
        raise ImageError(f"unsupported image dtype {tensor.dtype}")
    return tensor.float()


def resize(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bicubic (antialiased) resize of ``(3, H, W)`` to ``size = (H', W')``, clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=tuple(size), mode="bicubic", align_corners=False,
                        antialias=True)
    return out[0].clamp_(0.0, 1.0)


def resize_shorter_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (aspect ratio kept)."""
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def resize_longer_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the longer side is ``size`` (aspect ratio kept)."""
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def center_crop(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Crop the central ``size = (H', W')`` region (padded with the mean colour first if smaller)."""
    image = pad_to(image, (max(size[0], image.shape[-2]), max(size[1], image.shape[-1])))
    top = (image.shape[-2] - size[0]) // 2
    left = (image.shape[-1] - size[1]) // 2
    return image[..., top : top + size[0], left : left + size[1]]


def pad_to(image: torch.Tensor, size: Tuple[int, int], centered: bool = True) -> torch.Tensor:
    """Pad ``(3, H, W)`` to ``size`` with the CLIP mean colour (zero after normalisation)."""
    height, width = image.shape[-2:]
    extra_h, extra_w = size[0] - height, size[1] - width
    if extra_h < 0 or extra_w < 0:
        raise ValueError(f"cannot pad {height}x{width} to the smaller size {size[0]}x{size[1]}")
    if extra_h == 0 and extra_w == 0:
        return image
    top = extra_h // 2 if centered else 0
    left = extra_w // 2 if centered else 0
    mean = torch.tensor(CLIP_MEAN, dtype=image.dtype).view(3, 1, 1)
    out = mean.expand(3, size[0], size[1]).clone()
    out[:, top : top + height, left : left + width] = image
    return out


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right so both sides are multiples of ``multiple`` (e.g. the patch size)."""
    height, width = image.shape[-2:]
    target = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
    return pad_to(image, target, centered=False)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """CLIP mean/std normalisation of ``(3, H, W)`` or ``(B, 3, H, W)`` in ``[0, 1]``."""
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def preprocess(image: ImageLike, size: int = 224, mode: str = "crop") -> torch.Tensor:
    """One image -> CLIP-normalised ``(3, size, size)``.

    ``mode``: ``"crop"`` (shorter side to ``size``, center crop: OpenAI's pipeline),
    ``"pad"`` (longer side to ``size``, pad with the mean colour) or ``"resize"`` (stretch).
    """
    tensor = to_tensor(image)
    if mode == "crop":
        tensor = center_crop(resize_shorter_side(tensor, size), (size, size))
    elif mode == "pad":
        tensor = pad_to(resize_longer_side(tensor, size), (size, size))
    elif mode == "resize":
        tensor = resize(tensor, (size, size))
    else:
        raise ValueError(f"unknown preprocessing mode {mode!r}; use 'crop', 'pad' or 'resize'")
    return normalize(tensor)


def preprocess_batch(images: Sequence[ImageLike], size: int = 224, mode: str = "crop") -> torch.Tensor:
    """Several images -> ``(B, 3, size, size)``."""
    return torch.stack([preprocess(image, size, mode) for image in images])
