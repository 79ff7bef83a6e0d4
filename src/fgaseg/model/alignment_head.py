"""T2P alignment head (official ``Projector``) and the T2Ploss.

The head upsamples the dense CLIP embedding x4 (os16 -> os4) and convolves it with a
class-specific 3x3 kernel generated from the (P2Tformer-refined) text embedding, giving one
alignment map per class. T2Ploss is sigmoid BCE between these maps and the one-hot ground truth
downsampled (nearest) to the maps' size. The head only shapes the text embedding through this
loss, so it is skipped at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.model.dynamic_conv import per_class_conv2d


def conv_layer(in_dim: int, out_dim: int, kernel_size: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, indices 0/1/2 as official."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size, 1, padding, bias=False),
        nn.BatchNorm2d(out_dim),
        nn.ReLU(True),
    )


class Projector(nn.Module):
    """``Projector(word_dim=C, vision_dim=C // 2)``: ``(B, C, h, w)`` x ``(B, T, C)`` -> ``(B, T, 4h, 4w)``."""

    def __init__(self, word_dim: int, vision_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_layer(vision_dim * 2, vision_dim * 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_layer(vision_dim * 2, vision_dim, 3, padding=1),
            nn.Conv2d(vision_dim, vision_dim, 1),
        )
        self.out_dim = vision_dim * kernel_size * kernel_size + 1
        self.txt = nn.Linear(word_dim, self.out_dim)

    def forward(self, img_feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Args:
            img_feats: ``(B, C, h, w)`` dense CLIP embedding (C = word_dim = 2 * vision_dim).
            text: ``(B, T, C)`` per-image class embeddings.
        Returns:
            ``(B, T, 4h, 4w)`` alignment logits.
        """
        x = self.vis(img_feats)
        B, T = text.shape[:2]
        k = self.kernel_size
        params = self.txt(text)
        weight = params[..., :-1].reshape(B, T, self.vision_dim, k, k)
        return per_class_conv2d(x, weight, params[..., -1])


def one_hot_targets(targets: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """``(B, H, W)`` int labels -> ``(B, T, H, W)`` float one-hot; ignore pixels are all zero."""
    valid = targets != ignore_index
    labels = torch.where(valid, targets, torch.zeros_like(targets))
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(torch.float32)
    return onehot * valid.unsqueeze(1)


def t2p_loss(align_logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """T2Ploss: mean BCE-with-logits of ``(B, T, h, w)`` maps against the one-hot target
    ``(B, T, H, W)`` resized to ``(h, w)`` by nearest interpolation (official)."""
    if onehot.shape[-2:] != align_logits.shape[-2:]:
        onehot = F.interpolate(onehot, size=align_logits.shape[-2:], mode="nearest")
    return F.binary_cross_entropy_with_logits(align_logits, onehot.to(align_logits.dtype))
