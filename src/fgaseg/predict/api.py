"""`predict()`: segment user images with any segmenter (FGASeg, training-free CLIP, ...).

A segmenter follows the protocol in docs/architecture.md: ``device`` and
``segment_logits(images (B, 3, H, W) in [0, 1], class_names, *, sliding, topk) -> (B, T, H, W)``.
The class list is passed unchanged to every call so the segmenter's per-list text-embedding
cache is reused across images and calls.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from fgaseg.errors import ConfigError, ImageError
from fgaseg.model.official_protocol import protocol_kwargs
from fgaseg.predict.class_names import ClassNames, parse_class_names
from fgaseg.predict.image_io import MAX_PIXELS, describe, load_image, to_uint8
from fgaseg.predict.result import SegmentationResult

#: Long side (pixels) the model sees by default; larger images are downscaled for inference
#: and their label map is brought back to the original size. 640 is the resolution of the
#: CAT-Seg/FGAseg evaluation protocol; the model's own output grid is coarser still.
DEFAULT_MAX_SIDE = 640

# bound on T * rows * W floats while upsampling scores to the original size (~64 MB)
_UPSAMPLE_BUDGET = 16_000_000


def predict(segmenter: Any, images: Any, classes: ClassNames, *, sliding: bool = False,
            topk: Optional[int] = None, max_side: Optional[int] = DEFAULT_MAX_SIDE,
            max_pixels: int = MAX_PIXELS, keep_image: bool = True,
            allow_duplicates: bool = False, protocol: str = "default"
            ) -> Union[SegmentationResult, list[SegmentationResult]]:
    """Segment one image or a list of images with `classes`.

    Args:
        segmenter: an object with ``device`` and ``segment_logits`` (see module doc).
        images: a path, PIL image, numpy array ``(H, W[, C])``, tensor ``(C, H, W)``, a list
            of these, or a batch tensor/array ``(B, 3, H, W)``; see `fgaseg.predict.image_io`.
        classes: names as a list or a comma-separated string (validated by
            `parse_class_names`: blank or duplicate names raise ClassNamesError).
        sliding, topk: forwarded to ``segment_logits``; ``topk=None`` is the model's default
            (FGASeg: the config's TopK class pruning), ``0`` disables pruning.
        max_side: images with a longer side are downscaled to it for inference; labels are
            returned at the original size. None or 0 = never downscale.
        max_pixels: larger images are refused with ImageError (default 40 MP).
        keep_image: keep the RGB input in the result (needed by ``overlay()``).
        protocol: "default" or "official" (FGASeg only): the official code's final scores at
            the size the model sees (``max_side=0``: the original size, exactly as the official
            code); labels of downscaled images come from resized probabilities, as there.
    Returns:
        one SegmentationResult for a single image, a list for a list/batch.
    """
    names = parse_class_names(classes, allow_duplicates=allow_duplicates)
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 0):
        raise ConfigError(f"topk must be None (model default), 0 (no pruning) or a positive "
                          f"integer, got {topk!r}")
    if max_side is not None and max_side < 0:
        raise ConfigError(f"max_side must be positive (or 0/None for no limit), got {max_side}")
    protocol_kw = protocol_kwargs(segmenter, protocol)
    batch, single = _as_list(images)
    results = []
    for index, source in enumerate(batch):
        try:
            results.append(_predict_one(segmenter, source, names, sliding=sliding, topk=topk,
                                        max_side=max_side or None, max_pixels=max_pixels,
                                        keep_image=keep_image, protocol_kw=protocol_kw))
        except ImageError as exc:
            if single:
                raise
            raise ImageError(f"image #{index + 1} of {len(batch)}: {exc}") from None
    return results[0] if single else results


def _as_list(images: Any) -> tuple[Sequence[Any], bool]:
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageError("the image list is empty")
        return list(images), False
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ImageError("the image batch is empty")
        return list(images), False
    return [images], True


def _segmenter_device(segmenter: Any) -> torch.device:
    device = getattr(segmenter, "device", None)
    if device is not None:
        return torch.device(device)
    for tensor in getattr(segmenter, "parameters", lambda: iter(()))():
        return tensor.device
    return torch.device("cpu")


def _predict_one(segmenter: Any, source: Any, names: list[str], *, sliding: bool,
                 topk: Optional[int], max_side: Optional[int], max_pixels: int,
                 keep_image: bool, protocol_kw: Optional[dict] = None) -> SegmentationResult:
    start = time.perf_counter()
    rgb = load_image(source, max_pixels=max_pixels)  # (H, W, 3) float in [0, 1]
    height, width = rgb.shape[:2]
    pixels = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W)
    infer_size = inference_size(height, width, max_side)
    if infer_size != (height, width):
        pixels = F.interpolate(pixels, size=infer_size, mode="bilinear", align_corners=False,
                               antialias=True).clamp_(0.0, 1.0)
    loaded = time.perf_counter()

    with torch.no_grad():
        logits = segmenter.segment_logits(pixels.to(_segmenter_device(segmenter)), names,
                                          sliding=sliding, topk=topk, **(protocol_kw or {}))
    # a segmenter may add channels (e.g. "background" of the training-free mode)
    output_names = (list(segmenter.output_class_names(names))
                    if hasattr(segmenter, "output_class_names") else names)
    if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != len(output_names):
        raise RuntimeError(f"segmenter returned scores of shape {tuple(logits.shape)}, "
                           f"expected (1, {len(output_names)}, H, W)")
    logits = logits[0].float()
    if tuple(logits.shape[-2:]) != infer_size:
        logits = F.interpolate(logits[None], size=infer_size, mode="bilinear",
                               align_corners=False)[0]
    inferred = time.perf_counter()

    if infer_size == (height, width):
        labels = logits.argmax(0)
    else:
        # official protocol: probabilities are what the official code resizes
        official = bool(protocol_kw) and protocol_kw.get("protocol") == "official"
        labels = upsampled_argmax(logits.sigmoid() if official else logits, (height, width))
    result = SegmentationResult(
        labels=labels.to("cpu", torch.int64).numpy(),
        scores=logits.to("cpu").numpy().astype(np.float32, copy=False),
        class_names=list(output_names),
        image=to_uint8(rgb) if keep_image else None,
        source=describe(source),
    )
    result.timings = {"load": loaded - start, "inference": inferred - loaded,
                      "postprocess": time.perf_counter() - inferred}
    return result


def inference_size(height: int, width: int, max_side: Optional[int]) -> tuple[int, int]:
    """(h, w) the model sees: the image size, shrunk to `max_side` on the long side."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def upsampled_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """argmax over T of `scores` ``(T, h, w)`` bilinearly resized to `size` ``(H, W)``.

    Equivalent to ``F.interpolate(scores[None], size, mode="bilinear").argmax(1)[0]`` but
    done in bands of rows so memory stays bounded for large images and many classes.
    """
    num_classes = scores.shape[0]
    height, width = size
    if num_classes * height * width <= _UPSAMPLE_BUDGET:  # small enough: one call
        return F.interpolate(scores[None], size=size, mode="bilinear",
                             align_corners=False)[0].argmax(0)
    rows = max(1, _UPSAMPLE_BUDGET // max(1, num_classes * width))
    # normalised x/y coordinates of output pixel centres (align_corners=False convention)
    xs = (torch.arange(width, dtype=torch.float32, device=scores.device) + 0.5) / width * 2 - 1
    labels = torch.empty(size, dtype=torch.int64, device=scores.device)
    source = scores[None]
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        ys = (torch.arange(top, bottom, dtype=torch.float32, device=scores.device) + 0.5) \
            / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        band = F.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)
        labels[top:bottom] = band[0].argmax(0)
    return labels
