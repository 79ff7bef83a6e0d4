"""Optional TensorBoard logging (losses, learning rate, example predictions).

If the ``tensorboard`` package is missing, logging is silently reduced to the progress bar.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch


def label_colors(num: int) -> torch.Tensor:
    """``(num + 1, 3)`` uint8 colours, deterministic; the last row (ignore) is black."""
    generator = torch.Generator().manual_seed(12345)
    colors = torch.randint(40, 256, (num + 1, 3), generator=generator, dtype=torch.uint8)
    colors[-1] = 0
    return colors


def colorize(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(H, W)`` class ids (ids outside ``[0, num_classes)`` = ignore) -> ``(3, H, W)`` uint8."""
    label = label.detach().long().cpu().clone()
    label[(label < 0) | (label >= num_classes)] = num_classes
    return label_colors(num_classes)[label].permute(2, 0, 1)


def example_panel(image: torch.Tensor, target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Side by side ``image | ground truth | prediction`` as ``(3, H, 3W)`` uint8.

    ``image (3, H, W)`` in [0, 1], ``target (H, W)``, ``logits (T, h, w)`` (any size)."""
    num_classes = logits.shape[0]
    size = image.shape[1:]
    logits = logits.detach().float()
    if tuple(logits.shape[1:]) != tuple(size):
        logits = torch.nn.functional.interpolate(logits[None], size=size, mode="bilinear",
                                                 align_corners=False)[0]
    picture = (image.detach().float().cpu().clamp(0, 1) * 255).to(torch.uint8)
    return torch.cat([picture, colorize(target, num_classes),
                      colorize(logits.argmax(0), num_classes)], dim=2)


class TensorBoardLogger:
    """Thin wrapper over ``SummaryWriter``; every method is a no-op when disabled."""

    def __init__(self, log_dir: Union[str, Path], enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            warnings.warn("tensorboard is not installed: pip install 'fgaseg[tensorboard]'")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: Dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}{name}", value, step)

    def image(self, name: str, image: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(name, image, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
