"""Training augmentations of the recipe, on tensors (no torchvision, no OpenCV).

The official mapper (detectron2 ``MaskFormerSemanticDatasetMapper``) applies, in this order:
resize the shortest side to 384 (longest <= 1333), a random 384x384 crop (optionally with a
single-category area limit), SSD-style photometric distortion, a random horizontal flip, and
padding to 384 (image value 128/255, label = ignore). :class:`TrainTransform` does the same.

Every random draw comes from an explicit ``torch.Generator`` so that a sample's augmentation
depends only on its seed (exact resume, identical results for any number of processes).
Images are float ``(3, H, W)`` RGB in ``[0, 1]``; labels int64 ``(H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

Pair = Tuple[torch.Tensor, torch.Tensor]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.randint(0, 2, (), generator=generator).item())


def resize_pair(image: torch.Tensor, label: torch.Tensor, size: Tuple[int, int]) -> Pair:
    """Bilinear (antialiased, like PIL) image and nearest label resize to ``size=(h, w)``.

    Label ids go through float32, exact for ids < 2**24."""
    if tuple(image.shape[1:]) == tuple(size):
        return image, label
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0, 1)
    # nearest by pixel centres (as PIL's NEAREST, which detectron2 uses for label maps)
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image, label


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """detectron2 ``ResizeShortestEdge`` output size."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def random_crop(image: torch.Tensor, label: torch.Tensor, crop: int, generator: torch.Generator,
                ignore_index: int = 255, single_category_max_area: float = 1.0) -> Pair:
    """Random ``crop x crop`` window (smaller if the image is). With
    ``single_category_max_area < 1`` up to 10 windows are tried until no class covers more than
    that share of the labelled pixels (detectron2 ``RandomCrop_CategoryAreaConstraint``)."""
    height, width = label.shape
    ch, cw = min(crop, height), min(crop, width)
    for _ in range(10):
        top = int(torch.randint(0, height - ch + 1, (), generator=generator))
        left = int(torch.randint(0, width - cw + 1, (), generator=generator))
        window = label[top:top + ch, left:left + cw]
        if single_category_max_area >= 1.0:
            break
        counts = torch.bincount(window[window != ignore_index].flatten())
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max().item() / counts.sum().item() < single_category_max_area:
            break
    return image[:, top:top + ch, left:left + cw], window


def pad_to(image: torch.Tensor, label: torch.Tensor, size: int, ignore_index: int = 255) -> Pair:
    """Pad bottom/right to ``size x size``: image with 128/255 (as the official mapper), label
    with ``ignore_index``."""
    pad_h, pad_w = size - image.shape[1], size - image.shape[2]
    if pad_h <= 0 and pad_w <= 0:
        return image, label
    pad = (0, max(pad_w, 0), 0, max(pad_h, 0))
    return (F.pad(image, pad, value=128 / 255), F.pad(label, pad, value=ignore_index))


def hflip(image: torch.Tensor, label: torch.Tensor) -> Pair:
    return image.flip(-1), label.flip(-1)


# ---- photometric distortion (detectron2 ColorAugSSDTransform, on [0, 1] floats) ----------------

def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = image
    maxc, _ = image.max(0)
    minc, _ = image.min(0)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, ((g - b) / safe) % 6,
                      torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                      torch.zeros_like(maxc))
    return torch.stack([hue % 1.0, sat, maxc])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, sat, val = hsv
    k = torch.stack([(5 + hue * 6) % 6, (3 + hue * 6) % 6, (1 + hue * 6) % 6])
    return val - val * sat * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


@dataclass
class PhotometricDistortion:
    """SSD colour jitter: brightness +-32/255, contrast x[0.5, 1.5], saturation x[0.5, 1.5],
    hue +-18/180 of the circle; each applied with probability 1/2, contrast either first or
    last (as detectron2's ``ColorAugSSDTransform``)."""

    brightness_delta: float = 32 / 255
    contrast_range: Tuple[float, float] = (0.5, 1.5)
    saturation_range: Tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18  # in OpenCV hue units (180 = full circle)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if _coin(generator):
            image = (image + _uniform(generator, -self.brightness_delta,
                                      self.brightness_delta)).clamp(0, 1)
        contrast_first = _coin(generator)
        if contrast_first:
            image = self._contrast(image, generator)
        image = self._saturation_hue(image, generator)
        if not contrast_first:
            image = self._contrast(image, generator)
        return image

    def _contrast(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if _coin(generator):
            image = (image * _uniform(generator, *self.contrast_range)).clamp(0, 1)
        return image

    def _saturation_hue(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        saturation = _uniform(generator, *self.saturation_range) if _coin(generator) else None
        hue_shift = None
        if _coin(generator):
            hue_shift = int(torch.randint(-self.hue_delta, self.hue_delta + 1, (),
                                          generator=generator)) / 180.0
        if saturation is None and hue_shift is None:
            return image
        hsv = rgb_to_hsv(image)
        if saturation is not None:
            hsv[1] = (hsv[1] * saturation).clamp(0, 1)
        if hue_shift is not None:
            hsv[0] = (hsv[0] + hue_shift) % 1.0
        return hsv_to_rgb(hsv).clamp(0, 1)


@dataclass
class TrainTransform:
    """The recipe's training augmentation: (image, label, generator) -> crop-sized pair."""

    crop_size: int = 384
    min_size: int = 384          # shortest side after resizing
    max_size: int = 1333         # cap on the longest side (detectron2 MAX_SIZE_TRAIN default)
    flip: bool = True
    photometric: bool = True
    single_category_max_area: float = 1.0
    ignore_index: int = 255

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator) -> Pair:
        if self.min_size > 0:
            size = shortest_edge_size(image.shape[1], image.shape[2], self.min_size, self.max_size)
            image, label = resize_pair(image, label, size)
        image, label = random_crop(image, label, self.crop_size, generator, self.ignore_index,
                                   self.single_category_max_area)
        if self.photometric:
            image = PhotometricDistortion()(image, generator)
        if self.flip and _coin(generator):
            image, label = hflip(image, label)
        image, label = pad_to(image, label, self.crop_size, self.ignore_index)
        return image.contiguous(), label.contiguous()


def sample_seed(seed: int, position: int) -> int:
    """A 63-bit seed for the sample at stream ``position`` (SplitMix-style mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + position + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF
