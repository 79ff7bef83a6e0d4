"""Sliding-window inference: average per-crop score maps over overlapping windows."""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Start offsets of windows of ``window`` pixels covering ``size`` pixels with ``stride``.

    The last window is shifted back to end at ``size`` (mmseg's rule); a side shorter than the
    window gets one window of the whole side.
    """
    if size <= window:
        return [0]
    count = -(-(size - window) // stride) + 1  # ceil division
    starts = [min(i * stride, size - window) for i in range(count)]
    return sorted(set(starts))


def sliding_window(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window: Tuple[int, int],
    stride: Tuple[int, int],
) -> torch.Tensor:
    """Apply ``score_fn`` (``(B, 3, h, w)`` -> ``(B, T, h, w)``) to every window and average.

    ``images (B, 3, H, W)`` -> ``(B, T, H, W)``; windows are ``min(window, image side)`` in size,
    so non-square and small images work. Overlapping scores are averaged per pixel.
    """
    height, width = images.shape[-2:]
    win_h, win_w = min(window[0], height), min(window[1], width)
    total = None
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for top in window_starts(height, win_h, stride[0]):
        for left in window_starts(width, win_w, stride[1]):
            crop = images[:, :, top : top + win_h, left : left + win_w]
            scores = score_fn(crop).float()
            if total is None:
                total = scores.new_zeros((scores.shape[0], scores.shape[1], height, width))
            total[:, :, top : top + win_h, left : left + win_w] += scores
            count[:, :, top : top + win_h, left : left + win_w] += 1
    return total / count
