"""Per-(image, class) dynamic convolution as one grouped ``conv2d`` (replaces official Python loops)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_class_conv2d(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Convolve every image with its own set of single-output-channel kernels.

    Args:
        feats: ``(B, C, H, W)``.
        weight: ``(B, N, C, k, k)`` one kernel per image and output map (k odd).
        bias: ``(B, N)``.
    Returns:
        ``(B, N, H, W)`` with ``out[b, n] = conv2d(feats[b], weight[b, n], bias[b, n], padding=k // 2)``;
        numerically the same as the per-class loop of the official code.
    """
    B, C, H, W = feats.shape
    N, k = weight.shape[1], weight.shape[-1]
    out = F.conv2d(
        feats.reshape(1, B * C, H, W),
        weight.reshape(B * N, C, k, k),
        bias=bias.reshape(B * N),
        padding=k // 2,
        groups=B,
    )
    return out.reshape(B, N, H, W)
