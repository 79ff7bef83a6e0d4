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

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.model.parallel_chunks import for_each_chunk


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


_MLP_ROWS = 1024  # tokens per MLP pass at inference: the (rows, 4C) hidden stays in cache


def _functional() -> bool:
    """True when autograd records or a graph is captured: no in-place shortcuts then."""
    return bool(torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


class Mlp(nn.Module):
    """timm's ``Mlp`` (fc1 -> GELU -> fc2), same parameter names."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _functional():
            return self.fc2(self.act(self.fc1(x)))
        hidden = self.fc1(x)
        torch.ops.aten.gelu_(hidden)  # in place: no second large tensor (same values as nn.GELU)
        return self.fc2(hidden)

    def residual_(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """``x + mlp(norm(x))``; at inference in place on ``x``, ``_MLP_ROWS`` tokens at a time
        (LayerNorm, both GEMMs and the residual of a block run while it is in cache)."""
        if _functional() or not x.is_contiguous():
            return x + self(norm(x))
        rows = x.view(-1, x.shape[-1])
        for s in range(0, rows.shape[0], _MLP_ROWS):
            block = rows[s:s + _MLP_ROWS]
            block += self(norm(block))
        return x


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


def window_order(padded_hw: Tuple[int, int], ws: int, shift: int) -> torch.Tensor:
    """Flat indices into the ``(Hp, Wp)`` grid listing the tokens window by window, after the
    grid is rolled by ``-shift``: ``tokens_in_window_order = grid.flatten()[order]``."""
    Hp, Wp = padded_hw
    grid = torch.arange(Hp * Wp, device="cpu").view(1, Hp, Wp, 1)
    if shift > 0:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, ws).reshape(-1)


class SwinTransformerBlock(nn.Module):
    """Pre-LN Swin block with guidance.

    ``forward`` takes a grid ``(B, T, H, W, C)``; ``forward_windows`` takes the tokens already in
    this block's (rolled) window order ``(B*T, nW*L, C)``, which lets consecutive blocks skip the
    roll / partition / reverse copies (the wrapper uses it). Both give the same result.
    """

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
        self.padded = self.padded_resolution != self.input_resolution
        self._mask_cache: Optional[Tuple[int, torch.dtype, torch.device, torch.Tensor]] = None
        self._index_cache: Dict[Tuple[str, torch.device], torch.Tensor] = {}

    def index(self, name: str, device: torch.device) -> torch.Tensor:
        """Constant index tensors on ``device`` (built lazily, so meta-device construction and
        ``.to()`` need no buffers): ``"order"`` (:func:`window_order`) and ``"valid"`` (bool,
        real (not padding) tokens in window order)."""
        key = (name, torch.device(device))
        if key not in self._index_cache:
            order = window_order(self.padded_resolution, self.window_size, self.shift_size)
            if name == "order":
                value = order
            else:
                H, W = self.input_resolution
                valid = torch.zeros(self.padded_resolution, dtype=torch.bool, device="cpu")
                valid[:H, :W] = True
                value = valid.flatten()[order]
            self._index_cache[key] = value.to(device)
        return self._index_cache[key]

    # ------------------------------------------------------------------ layout helpers
    def grid_to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, C)`` -> ``(N, nW*L, C)`` in this block's window order (zero padding)."""
        N, H, W, C = x.shape
        Hp, Wp = self.padded_resolution
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        return x.reshape(N, Hp * Wp, C).index_select(1, self.index("order", x.device))

    def windows_to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`grid_to_windows`: ``(N, nW*L, C)`` -> ``(N, H, W, C)``."""
        N, _, C = x.shape
        Hp, Wp = self.padded_resolution
        H, W = self.input_resolution
        grid = x.new_empty(N, Hp * Wp, C)
        grid[:, self.index("order", x.device)] = x
        return grid.view(N, Hp, Wp, C)[:, :H, :W]

    def guidance_qk(self, guidance: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Guidance half of the q/k projections in window order: ``(B, H, W, Cg)`` -> ``(B, 1, nW*L, 2C)``
        (computed once per image, shared by all classes)."""
        if guidance is None:
            return None
        a, d = self.attn, self.dim
        g = self.grid_to_windows(guidance)
        w = torch.cat([a.q.weight[:, d:], a.k.weight[:, d:]], dim=0)
        return F.linear(g, w).unsqueeze(1)

    def _batch_mask(self, n_slices: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """``attn_mask (nW, L, L)`` repeated per slice as ``(n_slices*nW, 1, L, L)`` (what the fused
        CPU attention kernel accepts), cached for the last size."""
        if self.attn_mask is None:
            return None
        c = self._mask_cache
        if c is not None and c[0] == n_slices and c[1] == dtype and c[2] == self.attn_mask.device:
            return c[3]
        nW, L, _ = self.attn_mask.shape
        mask = self.attn_mask.to(dtype).unsqueeze(0).expand(n_slices, nW, L, L).reshape(n_slices * nW, 1, L, L)
        self._mask_cache = (n_slices, dtype, self.attn_mask.device, mask)
        return mask

    # ------------------------------------------------------------------ forward
    def forward_windows(self, x: torch.Tensor, gqk: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """``x (batch*T, nW*L, C)`` in window order, ``gqk`` from :meth:`guidance_qk` -> same layout.

        At inference (no autograd) ``x`` is updated in place and returned: pass a tensor the
        caller does not need any more (the layout helpers always make a new one)."""
        N, S, C = x.shape
        a = self.attn
        h, L = a.num_heads, self.window_size ** 2
        nW = S // L
        y = self.norm1(x)
        if self.padded:  # padded tokens enter the attention as zeros (as the reference pads after norm1)
            y = y * self.index("valid", y.device).to(y.dtype).unsqueeze(-1)
        d = self.dim
        if gqk is None:
            w = torch.cat([a.q.weight, a.k.weight, a.v.weight], dim=0)
        else:
            w = torch.cat([a.q.weight[:, :d], a.k.weight[:, :d], a.v.weight], dim=0)
        qkv = F.linear(y, w, torch.cat([a.q.bias, a.k.bias, a.v.bias]))  # (N, S, 3C)
        if gqk is not None:
            qkv = qkv.view(batch, N // batch, S, 3 * C)
            qkv[..., : 2 * C] += gqk.to(qkv.dtype)
        qkv = qkv.view(N * nW, L, 3, h, C // h)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (N*nW, h, L, d) views
        mask = self._batch_mask(N, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = a.proj(out.transpose(1, 2).reshape(N, S, C))
        x = x + out if _functional() else x.add_(out)  # x is the caller's scratch tensor
        return self.mlp.residual_(x, self.norm2)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
        """``x (B, T, H, W, C)``, ``guidance (B, H, W, Cg)`` (already normalised) or None."""
        B, T, H, W, C = x.shape
        xw = self.grid_to_windows(x.reshape(B * T, H, W, C))
        out = self.forward_windows(xw, self.guidance_qk(guidance), B)
        return self.windows_to_grid(out).reshape(B, T, H, W, C)


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
        self._reorder: Dict[torch.device, torch.Tensor] = {}

    def reorder(self, device: torch.device) -> torch.Tensor:
        """Block 1's window order -> block 2's (shifted) window order, as one gather index."""
        if device not in self._reorder:
            order_1 = self.block_1.index("order", torch.device("cpu"))
            inverse_1 = torch.empty_like(order_1)
            inverse_1[order_1] = torch.arange(order_1.numel(), device="cpu")
            self._reorder[device] = inverse_1[self.block_2.index("order", torch.device("cpu"))].to(device)
        return self._reorder[device]

    def forward(self, x: torch.Tensor, appearance_guidance: Optional[torch.Tensor],
                chunk_size: Optional[int] = None) -> torch.Tensor:
        """``x (B, C, T, H, W)``, ``appearance_guidance (B, Cg, H, W)``; classes are independent,
        so ``chunk_size`` classes are processed at a time with identical results.

        The tokens stay in window order between the two blocks (one gather instead of
        reverse + roll + partition). The result is written in the class aggregation's token
        layout: memory ``(B, H, W, T, C)``, returned as a ``(B, C, T, H, W)`` view, so that the
        next stage reads it without another copy of every class slice."""
        B, C, T, H, W = x.shape
        g = None
        if appearance_guidance is not None and self.guidance_norm is not None:
            g = self.guidance_norm(appearance_guidance.permute(0, 2, 3, 1))  # (B, H, W, Cg)
        g1, g2 = self.block_1.guidance_qk(g), self.block_2.guidance_qk(g)
        tokens = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
        step = T if not chunk_size else chunk_size
        out = x.new_empty(B, H, W, T, C)
        reorder = self.reorder(x.device)

        def chunk(start: int) -> None:
            t = tokens[:, start:start + step]
            n = t.shape[1]
            w = self.block_1.grid_to_windows(t.reshape(B * n, H, W, C))
            w = self.block_1.forward_windows(w, g1, B)
            w = self.block_2.forward_windows(w.index_select(1, reorder), g2, B)
            out[:, :, :, start:start + step] = self.block_2.windows_to_grid(w).view(B, n, H, W, C).permute(0, 2, 3, 1, 4)

        for_each_chunk(chunk, range(0, T, step), x.device)
        return out.permute(0, 4, 3, 1, 2)
