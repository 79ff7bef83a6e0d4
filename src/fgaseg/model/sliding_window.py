"""Sliding-window inference protocol of CAT-Seg / FGA-seg (``inference_sliding_window``).

The image is resized to ``resize x resize`` (640 officially) and cut into ``window`` crops (384)
with stride ``int(window * (1 - overlap))`` (256: 2 x 2 crops); a global view (the whole image
resized to ``window``) is added. Each view's logits are resized to the window, turned into
probabilities with a sigmoid, the crops are averaged where they overlap, the result is averaged
50/50 with the global view resized to ``resize``, and finally resized to the input size.

Generalised to any sizes: when the crops do not tile the resized image exactly, the last crop
of a row/column is aligned to the border (the official sizes tile exactly, so nothing changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SlidingPlan:
    """Window geometry: crop side, resized image side and the top-left corner of every crop."""

    window: int
    resize: int
    positions: Tuple[Tuple[int, int], ...]

    @property
    def num_views(self) -> int:
        return len(self.positions) + 1  # crops + global view


def _starts(size: int, window: int, stride: int) -> List[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def make_plan(window: int, overlap: float = 0.333, resize: Optional[int] = None) -> SlidingPlan:
    """Official: ``make_plan(384, 0.333, 640)`` -> 4 crops at 0/256 plus the global view."""
    stride = max(1, int(window * (1 - overlap)))
    resize = resize if resize is not None else window + stride
    resize = max(resize, window)
    starts = _starts(resize, window, stride)
    return SlidingPlan(window, resize, tuple((y, x) for y in starts for x in starts))


def make_views(image: torch.Tensor, plan: SlidingPlan) -> torch.Tensor:
    """``image (3, H, W)`` -> views ``(V, 3, window, window)``: crops, then the global view."""
    k = plan.window
    big = F.interpolate(image[None], size=(plan.resize, plan.resize), mode="bilinear", align_corners=False)
    crops = [big[0, :, y:y + k, x:x + k] for y, x in plan.positions]
    global_view = F.interpolate(image[None], size=(k, k), mode="bilinear", align_corners=False)[0]
    return torch.stack(crops + [global_view], dim=0)


MERGE_FLOATS = 2 ** 22  # view-logit floats (at window size) per class chunk while merging


def merge_chunk(plan: SlidingPlan) -> int:
    """Classes merged at a time: the chunk's temporaries stay ~16 MB, which the allocator
    reuses from call to call (larger ones are fresh memory, paid in page faults every time)."""
    return max(1, MERGE_FLOATS // (plan.num_views * plan.window ** 2))


def merge_views(view_logits: torch.Tensor, plan: SlidingPlan, out_size: Tuple[int, int]) -> torch.Tensor:
    """``view_logits (V, T, h, w)`` (crops then global) -> probabilities ``(T, H, W)`` at ``out_size``."""
    k, R = plan.window, plan.resize
    probs = F.interpolate(view_logits, size=(k, k), mode="bilinear", align_corners=False).sigmoid_()
    T = probs.shape[1]
    total = probs.new_zeros(T, R, R)
    count = probs.new_zeros(1, R, R)
    for i, (y, x) in enumerate(plan.positions):
        total[:, y:y + k, x:x + k] += probs[i]
        count[:, y:y + k, x:x + k] += 1
    crops = total.div_(count)
    global_probs = F.interpolate(probs[-1:], size=(R, R), mode="bilinear", align_corners=False)[0]
    merged = crops.add_(global_probs).div_(2.0)  # (crops + global) / 2, without new tensors
    if tuple(out_size) != (R, R):
        merged = F.interpolate(merged[None], size=tuple(out_size), mode="bilinear", align_corners=False)[0]
    return merged


def sliding_window_probs(image: torch.Tensor, plan: SlidingPlan,
                         run_views: Callable[[torch.Tensor], torch.Tensor],
                         class_chunk: Optional[int] = None, logits: bool = False) -> torch.Tensor:
    """Probabilities ``(T, H, W)`` of one image ``(3, H, W)``; ``run_views(views) -> (V, T, h, w)``
    logits. Merging is done ``class_chunk`` classes at a time to bound memory; ``logits``: return
    :func:`probs_to_logits` of the result instead (applied chunk by chunk, same values)."""
    view_logits = run_views(make_views(image, plan))
    T = view_logits.shape[1]
    step = class_chunk or T
    out_size = tuple(image.shape[-2:])
    out = None
    for s in range(0, T, step):
        part = merge_views(view_logits[:, s:s + step], plan, out_size)
        if logits:
            part = probs_to_logits(part, inplace=True)
        if T <= step:
            return part
        if out is None:
            out = part.new_empty(T, *part.shape[1:])
        out[s:s + step] = part
    return out


def probs_to_logits(probs: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Inverse sigmoid, clamped to the open float32 interval so that it stays finite
    (``inplace``: overwrites ``probs``, same values)."""
    tiny = torch.finfo(probs.dtype).tiny
    high = 1.0 - torch.finfo(probs.dtype).eps / 2
    if inplace:
        return probs.clamp_(min=tiny, max=high).logit_()
    return torch.logit(probs.clamp(min=tiny, max=high))
