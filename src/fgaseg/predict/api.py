"""`predict()`: segment user images with any segmenter (FGASeg, training-free CLIP, ...).

A segmenter follows the protocol in docs/architecture.md: ``device`` and
``segment_logits(images (B, 3, H, W) in [0, 1], class_names, *, sliding, topk) -> (B, T, H, W)``.
The class list is passed unchanged to every call so the segmenter's per-list text-embedding
cache is reused across images and calls.
"""

from __future__ import annotations

import inspect
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
from fgaseg.predict.scores import UPSAMPLE_BUDGET, ClassScores

#: Long side (pixels) the model sees by default; larger images are downscaled for inference
#: and their label map is brought back to the original size. 640 is the resolution of the
#: CAT-Seg/FGAseg evaluation protocol; the model's own output grid is coarser still.
DEFAULT_MAX_SIDE = 640

# below T * H * W = this, labels come from one F.interpolate call, else from per-cell grid_sample
_UPSAMPLE_BUDGET = UPSAMPLE_BUDGET


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
        scores = _segment(segmenter, pixels.to(_segmenter_device(segmenter)), names,
                          sliding=sliding, topk=topk, size=infer_size,
                          protocol_kw=protocol_kw or {})
    inferred = time.perf_counter()

    if infer_size == (height, width):
        labels = scores.argmax()
    else:
        # official protocol: probabilities are what the official code resizes (sigmoid is
        # monotone and per element, so the compact storage carries over)
        official = (protocol_kw or {}).get("protocol") == "official"
        ranked = _probabilities(scores) if official else scores
        labels = ranked.upsampled_argmax((height, width), budget=_UPSAMPLE_BUDGET)
    result = SegmentationResult(
        labels=labels.to("cpu", torch.int64).numpy(),
        class_scores=scores.cpu(),
        class_names=list(_output_names(segmenter, names)),
        image=to_uint8(rgb) if keep_image else None,
        source=describe(source),
    )
    result.timings = {"load": loaded - start, "inference": inferred - loaded,
                      "postprocess": time.perf_counter() - inferred}
    return result


def _output_names(segmenter: Any, names: list[str]) -> list[str]:
    # a segmenter may add channels (e.g. "background" of the training-free mode)
    if hasattr(segmenter, "output_class_names"):
        return list(segmenter.output_class_names(names))
    return names


def _probabilities(scores: ClassScores) -> ClassScores:
    """``sigmoid`` of every map of ``scores``, stored the same way."""
    return ClassScores(scores.values.sigmoid(), scores.classes, scores.num_classes, scores.shared)


def _accepts_protocol(method: Any) -> bool:
    try:
        return "protocol" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _segment(segmenter: Any, pixels: torch.Tensor, names: list[str], *, sliding: bool,
             topk: Optional[int], size: tuple[int, int],
             protocol_kw: Optional[dict] = None) -> ClassScores:
    """Scores of one image ``(1, 3, h, w)``, compact when the segmenter can
    (``segment_scores``: classes it pruned share one map), else from ``segment_logits``.
    ``protocol_kw``: from ``protocol_kwargs`` (empty for the default protocol); a
    ``segment_scores`` without a ``protocol`` keyword is then bypassed."""
    protocol_kw = protocol_kw or {}
    expected = len(_output_names(segmenter, names))
    if hasattr(segmenter, "segment_scores") and (
            not protocol_kw or _accepts_protocol(segmenter.segment_scores)):
        scores = segmenter.segment_scores(pixels, names, sliding=sliding, topk=topk,
                                          **protocol_kw)[0]
        if scores.num_classes != expected or scores.size != size:
            raise RuntimeError(f"segmenter returned scores for {scores.num_classes} classes at "
                               f"{scores.size}, expected {expected} at {size}")
        return scores
    logits = segmenter.segment_logits(pixels, names, sliding=sliding, topk=topk, **protocol_kw)
    if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != expected:
        raise RuntimeError(f"segmenter returned scores of shape {tuple(logits.shape)}, "
                           f"expected (1, {expected}, H, W)")
    logits = logits[0].float()
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    return ClassScores.from_dense(logits)


def inference_size(height: int, width: int, max_side: Optional[int]) -> tuple[int, int]:
    """(h, w) the model sees: the image size, shrunk to `max_side` on the long side."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def upsampled_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """argmax over T of `scores` ``(T, h, w)`` bilinearly resized to `size` ``(H, W)``.

    Equivalent to ``F.interpolate(scores[None], size, mode="bilinear").argmax(1)[0]`` but
    memory-bounded for large images and many classes (see `ClassScores.upsampled_argmax`).
    """
    return ClassScores.from_dense(scores).upsampled_argmax(size, budget=_UPSAMPLE_BUDGET)
