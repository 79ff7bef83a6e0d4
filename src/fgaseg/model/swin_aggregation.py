"""Spatial aggregation: Swin blocks applied to every class slice of the cost embedding.

Official ``SwinTransformerBlockWrapper`` (two blocks, the second shifted by half a window) with
appearance guidance: a projected, LayerNorm-ed CLIP embedding concatenated to the tokens for
the query and key projections only. Parameter names match the official code.

Generalisations (no effect on the official 24x24 grid with window 12): the window is
``min(window, grid)`` (no shift then, as official), and a grid that is not a multiple of the
window is zero-padded with the padded keys masked out.

Speed: the guidance half of the q/k projections is the same for every class, so it is computed
once per image and broadcast over classes (same maths as the official concatenation).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(N, H, W, C)`` -> ``(N, nW, ws*ws, C)``."""
    N, H, W, C = x.shape
    x = x.view(N, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, (H // ws) * (W // ws), ws * ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """``(N, nW, ws*ws, C)`` -> ``(N, H, W, C)``."""
    N, C = windows.shape[0], windows.shape[-1]
    x = windows.view(N, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, H, W, C)


class Mlp(nn.Module):
    """timm's ``Mlp`` (fc1 -> GELU -> fc2), same parameter names."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Window self-attention with guidance concatenated to q/k inputs (official names q, k, v, proj)."""

    def __init__(self, dim: int, appearance_guidance_dim: int, num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim + appearance_guidance_dim, dim)
        self.k = nn.Linear(dim + appearance_guidance_dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, guidance: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v for windowed tokens ``x (B, T, nW, L, C)`` with per-image windowed guidance
        ``(B, nW, L, Cg)``; the guidance half of q/k is computed once per image."""
        d = self.dim
        if guidance is None:
            return self.q(x), self.k(x), self.v(x)
        g = guidance.unsqueeze(1)
        q = F.linear(x, self.q.weight[:, :d]) + F.linear(g, self.q.weight[:, d:], self.q.bias)
        k = F.linear(x, self.k.weight[:, :d]) + F.linear(g, self.k.weight[:, d:], self.k.bias)
        return q, k, self.v(x)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Windows ``(N, nW, L, C)`` (+ mask ``(nW, L, L)``) -> ``(N, nW, L, C)``."""
        N, nW, L, C = q.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(N * nW, L, h, C // h).transpose(1, 2)  # (N*nW, h, L, d)

        attn_mask = None
        if mask is not None:
            # 4-D inputs keep SDPA on its fused CPU/GPU kernels (5-D falls back to the slow path)
            attn_mask = mask.to(q.dtype).unsqueeze(1).repeat(N, 1, 1, 1)  # (N*nW, 1, L, L)
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(N, nW, L, C)
        return self.proj(out)


def shifted_window_mask(H: int, W: int, ws: int, shift: int, valid_hw: Tuple[int, int]) -> Optional[torch.Tensor]:
    """The official Swin mask (-100 between different shifted regions) on an ``(H, W)`` grid,
    plus -100 on keys outside the ``valid_hw`` top-left region (padding). ``(nW, L, L)`` or None."""
    padded = (H, W) != tuple(valid_hw)
    if shift == 0 and not padded:
        return None
    mask = torch.zeros(1, H, W, 1)
    if shift > 0:
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                mask[:, hs, wsl, :] = cnt
                cnt += 1
    windows = window_partition(mask, ws).reshape(-1, ws * ws)
    attn_mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
    if padded:
        pad = torch.ones(1, H, W, 1)
        pad[:, : valid_hw[0], : valid_hw[1]] = 0
        # the grid is rolled by -shift before partitioning, so roll the padding map the same way
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(1, 2))
        pad_keys = window_partition(pad, ws).reshape(-1, ws * ws)
        attn_mask = attn_mask + pad_keys.unsqueeze(1) * -100.0
    return attn_mask


class SwinTransformerBlock(nn.Module):
    """Pre-LN Swin block with guidance; operates on ``(B, T, H, W, C)``."""

    def __init__(self, dim: int, appearance_guidance_dim: int, input_resolution: Tuple[int, int],
                 num_heads: int = 4, window_size: int = 7, shift_size: int = 0, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.window_size = window_size
        self.shift_size = shift_size
        if min(self.input_resolution) <= self.window_size:
            # window larger than the grid: one window, no shift (official behaviour)
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        H, W = self.input_resolution
        ws = self.window_size
        self.padded_resolution = (-(-H // ws) * ws, -(-W // ws) * ws)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, appearance_guidance_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*self.padded_resolution, ws, self.shift_size, self.input_resolution)
        self.register_buffer("attn_mask", mask)  # persistent, as in the official checkpoints

    def _windows(self, t: torch.Tensor) -> torch.Tensor:
        """``(N, Hp, Wp, C)`` -> rolled windows ``(N, nW, L, C)``."""
        if self.shift_size > 0:
            t = torch.roll(t, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        return window_partition(t, self.window_size)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        """``x (B, T, H, W, C)``, ``guidance (B, H, W, Cg)`` (already normalised) or None.

        Tokens are rolled and partitioned once, before the (per-token) q/k/v projections.
        """
        B, T, H, W, C = x.shape
        Hp, Wp = self.padded_resolution
        y = self.norm1(x)
        if (Hp, Wp) != (H, W):
            y = F.pad(y, (0, 0, 0, Wp - W, 0, Hp - H))
            if guidance is not None:
                guidance = F.pad(guidance, (0, 0, 0, Wp - W, 0, Hp - H))
        yw = self._windows(y.reshape(B * T, Hp, Wp, C))
        yw = yw.reshape(B, T, *yw.shape[1:])  # (B, T, nW, L, C)
        gw = None if guidance is None else self._windows(guidance)  # (B, nW, L, Cg)
        q, k, v = self.attn.project(yw, gw)
        out = self.attn.attend(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), self.attn_mask)
        out = window_reverse(out, self.window_size, Hp, Wp)
        if self.shift_size > 0:
            out = torch.roll(out, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        out = out.reshape(B, T, Hp, Wp, C)[:, :, :H, :W]
        x = x + out
        return x + self.mlp(self.norm2(x))


class SwinTransformerBlockWrapper(nn.Module):
    """Two Swin blocks (plain + shifted) over every class slice; ``(B, C, T, H, W)`` in and out."""

    def __init__(self, dim: int, appearance_guidance_dim: int, input_resolution: Tuple[int, int],
                 nheads: int = 4, window_size: int = 5) -> None:
        super().__init__()
        self.block_1 = SwinTransformerBlock(dim, appearance_guidance_dim, input_resolution,
                                            num_heads=nheads, window_size=window_size, shift_size=0)
        self.block_2 = SwinTransformerBlock(dim, appearance_guidance_dim, input_resolution,
                                            num_heads=nheads, window_size=window_size,
                                            shift_size=window_size // 2)
        self.guidance_norm = nn.LayerNorm(appearance_guidance_dim) if appearance_guidance_dim > 0 else None

    def forward(self, x: torch.Tensor, appearance_guidance: Optional[torch.Tensor],
                chunk_size: Optional[int] = None) -> torch.Tensor:
        """``x (B, C, T, H, W)``, ``appearance_guidance (B, Cg, H, W)``; classes are independent,
        so ``chunk_size`` classes are processed at a time with identical results."""
        B, C, T, H, W = x.shape
        g = None
        if appearance_guidance is not None and self.guidance_norm is not None:
            g = self.guidance_norm(appearance_guidance.permute(0, 2, 3, 1))  # (B, H, W, Cg)
        tokens = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
        step = T if not chunk_size else chunk_size
        outs = []
        for start in range(0, T, step):
            t = tokens[:, start:start + step]
            t = self.block_2(self.block_1(t, g), g)
            outs.append(t)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out.permute(0, 4, 1, 2, 3)
