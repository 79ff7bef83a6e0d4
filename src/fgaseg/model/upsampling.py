"""Upsampling decoder blocks guided by intermediate CLIP layers (CAT-Seg's ``Up``/``DoubleConv``)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """(Conv3x3 -> GroupNorm(channels // 16) -> ReLU) x 2; names ``double_conv.{0,1,3,4}`` as official."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Optional[int] = None) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(mid // 16, mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(mid // 16, mid),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Up(nn.Module):
    """x2 transposed conv to ``in - guidance`` channels, concat the projected guidance, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x (B*T, C, h, w)`` (image-major), ``guidance (B, G, 2h, 2w)`` -> ``(B*T, out, 2h, 2w)``.

        The first 3x3 conv is linear in its input, so the guidance channels' share is computed
        once per image and broadcast over classes instead of concatenating a copy per class
        (same maths as ``conv(cat([x, guidance]))``).
        """
        x = self.up(x)
        if guidance is None:
            return self.conv(x)
        first = self.conv.double_conv[0]
        c = x.shape[1]
        y = F.conv2d(x, first.weight[:, :c], padding=1)
        g = F.conv2d(guidance, first.weight[:, c:], padding=1)  # (B, mid, 2h, 2w)
        B = guidance.shape[0]
        y = (y.view(B, -1, *y.shape[1:]) + g.unsqueeze(1)).view(-1, *y.shape[1:])
        return self.conv.double_conv[1:](y)
