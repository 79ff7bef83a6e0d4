"""Upsampling decoder blocks guided by intermediate CLIP layers (CAT-Seg's ``Up``/``DoubleConv``).

Inference shortcut (exact maths, float rounding only): every block here starts with a 2x2
stride-2 transposed convolution followed by a 3x3 convolution, two linear maps with nothing in
between. Their composition, seen from the low-resolution input, is one 2x2 convolution per
output phase (each of the four pixels of a 2x2 output block sees a 2x2 input neighbourhood):
:func:`fold_upconv` builds it, :func:`folded_upconv` runs it. Per class that is
``4 * out * in * 4`` multiply-accumulates per input pixel instead of
``in * mid * 4 + 9 * mid * out * 4`` (Up-block 1: 82 M instead of 156 M MACs per class at
384²). The transposed convolution's bias only matters through the 3x3 convolution's zero
padding, so it becomes a constant map per output size. Training (autograd) keeps the two
convolutions. (The LCS decoder projection has the same structure, but folding it did not run
faster: 104 M -> 82 M MACs, 0.99x measured.)
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

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


def use_fold() -> bool:
    """The folded form is used when no gradient is recorded and no graph is being captured."""
    return not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


def fold_upconv(up: nn.ConvTranspose2d, w3: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Compose ``up`` (2x2, stride 2, ``Cin -> Cu``) with a 3x3 convolution ``w3 (M, Cu, 3, 3)``.

    Returns ``(kernel (4M, Cin, 2, 2), bias_taps (M, 1, 3, 3))``. Output channel ``(2a' + b')M + m``
    of ``conv2d(x, kernel, padding=1)`` at low-resolution position ``(p, q)`` is output pixel
    ``(2p + a' - 1, 2q + b' - 1)`` of channel ``m`` of ``conv3x3(up(x))``: pixel ``Y = 2i + a``
    reads up-sampled rows ``Y - 1 .. Y + 1``, i.e. input rows ``i + floor((a + dy) / 2)``, the
    first of which is the kernel's tap 0. ``bias_taps`` is ``w3`` applied to ``up``'s bias.
    """
    wt = up.weight  # (Cin, Cu, 2, 2)
    M, cin = w3.shape[0], wt.shape[0]
    kernel = w3.new_zeros(2, 2, M, cin, 2, 2)  # (a', b', m, c, ty, tx)
    for a in range(2):
        for b in range(2):
            for dy in (-1, 0, 1):
                ry = a + dy
                ty, sy = ry // 2 - a + 1, ry % 2
                for dx in (-1, 0, 1):
                    rx = b + dx
                    tx, sx = rx // 2 - b + 1, rx % 2
                    kernel[1 - a, 1 - b, :, :, ty, tx] += w3[:, :, dy + 1, dx + 1] @ wt[:, :, sy, sx].t()
    bias = up.bias if up.bias is not None else wt.new_zeros(wt.shape[1])
    bias_taps = torch.einsum("moyx,o->myx", w3, bias).unsqueeze(1)
    return kernel.reshape(4 * M, cin, 2, 2), bias_taps


_CACHE_ATTR = "_fgaseg_fold_cache"


def _cached_fold(up: nn.ConvTranspose2d, w3: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`fold_upconv`, recomputed only when a weight changed (kept on ``up``)."""
    tensors = [up.weight, w3] + ([up.bias] if up.bias is not None else [])
    key = tuple((t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in tensors)
    cache: Dict = up.__dict__.setdefault(_CACHE_ATTR, {})
    if cache.get("key") != key:
        cache.clear()
        cache["key"], cache["fold"] = key, fold_upconv(up, w3)
    return cache["fold"]


def _bias_map(up: nn.ConvTranspose2d, bias_taps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``conv3x3(up.bias everywhere)`` with zero padding: ``(1, M, H, W)``, cached per size."""
    cache = up.__dict__[_CACHE_ATTR]
    if ("map", size) not in cache:
        ones = bias_taps.new_ones(1, 1, *size)
        cache[("map", size)] = F.conv2d(ones, bias_taps, padding=1)
    return cache[("map", size)]


def folded_upconv(x: torch.Tensor, up: nn.ConvTranspose2d, w3: torch.Tensor,
                  share: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv3x3(up(x), w3) (+ share)`` for ``x (N, Cin, h, w)`` by the folded kernel.

    ``share (B, M, 2h, 2w)``: an extra per-image term broadcast over the ``N / B`` slices of each
    image (the guidance channels' part of the 3x3 convolution). Returns ``(N, M, 2h, 2w)`` in
    channels-last memory.
    """
    kernel, bias_taps = _cached_fold(up, w3)
    N, _, h, w = x.shape
    M = w3.shape[0]
    z = F.conv2d(x, kernel.to(x.dtype), padding=1)  # (N, 4M, h+1, w+1)
    z = z.permute(0, 2, 3, 1).reshape(N, h + 1, w + 1, 2, 2, M)  # (n, p, q, a', b', m)
    z = z.transpose(2, 3).reshape(N, 2 * h + 2, 2 * w + 2, M)[:, 1:-1, 1:-1]  # rows 2p + a' - 1
    add = _bias_map(up, bias_taps, (2 * h, 2 * w))
    if share is not None:
        add = share + add
    add = add.to(z.dtype).permute(0, 2, 3, 1)  # (B or 1, 2h, 2w, M)
    B = add.shape[0]
    out = torch.empty(N, 2 * h, 2 * w, M, dtype=z.dtype, device=z.device)
    torch.add(z.view(B, N // B, 2 * h, 2 * w, M), add.unsqueeze(1),
              out=out.view(B, N // B, 2 * h, 2 * w, M))
    return out.permute(0, 3, 1, 2)


class Up(nn.Module):
    """x2 transposed conv to ``in - guidance`` channels, concat the projected guidance, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def guidance_share(self, guidance: torch.Tensor) -> torch.Tensor:
        """The guidance channels' part of the first 3x3 conv: ``(B, G, 2h, 2w) -> (B, mid, 2h, 2w)``.
        Computed once per image, it is the same for every class slice."""
        first = self.conv.double_conv[0]
        return F.conv2d(guidance, first.weight[:, self.up.out_channels:], padding=1)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None,
                share: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x (B*T, C, h, w)`` (image-major), ``guidance (B, G, 2h, 2w)`` -> ``(B*T, out, 2h, 2w)``.

        The first 3x3 conv is linear in its input, so the guidance channels' share is computed
        once per image (or passed in as ``share``, from :meth:`guidance_share`) and broadcast
        over classes instead of concatenating a copy per class (same maths as
        ``conv(cat([x, guidance]))``).
        """
        if share is None and guidance is not None:
            share = self.guidance_share(guidance)
        first = self.conv.double_conv[0]
        c = self.up.out_channels
        if use_fold():
            y = folded_upconv(x, self.up, first.weight[:, :c], share)
            return self.conv.double_conv[1:](y)
        x = self.up(x)
        if share is None:
            return self.conv(x)
        y = F.conv2d(x, first.weight[:, :c], padding=1)
        B = share.shape[0]
        y = (y.view(B, -1, *y.shape[1:]) + share.unsqueeze(1)).view(-1, *y.shape[1:])
        return self.conv.double_conv[1:](y)
