"""Class aggregation: linear attention over the class axis at every (pooled) pixel.

Official ``ClassTransformerLayer`` + ``AttentionLayer`` + ``LinearAttention`` (elu + 1 feature
map, "Transformers are RNNs"). The class sequence is padded with a learnable token up to
``pad_len``; text guidance (projected class embeddings) is concatenated to the q/k inputs.

The implementation is exact but organised for speed and bounded memory:

* Linear attention only needs ``sum_s phi(k_s) v_s^T`` and ``sum_s phi(k_s)``. Both are
  accumulated over chunks of classes, then every chunk's outputs are computed from them: the
  result equals the unchunked one.
* The padding tokens are the same at every pixel (same token, same guidance), so their
  ``n_pad`` identical contributions are computed once as ``n_pad * phi(k_pad) v_pad^T``.
* The text-guidance half of the q/k projections depends on the class only, not on the pixel,
  so it is computed once per class and broadcast.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


class LinearAttention(nn.Module):
    """Parameter-free; kept as a module for parity with the official structure."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps


class AttentionLayer(nn.Module):
    """q/k from ``[x, guidance]``, v from ``x`` (official names q, k, v; no output projection)."""

    def __init__(self, hidden_dim: int, guidance_dim: int, nheads: int = 8) -> None:
        super().__init__()
        self.nheads = nheads
        self.hidden_dim = hidden_dim
        self.q = nn.Linear(hidden_dim + guidance_dim, hidden_dim)
        self.k = nn.Linear(hidden_dim + guidance_dim, hidden_dim)
        self.v = nn.Linear(hidden_dim, hidden_dim)
        self.attention = LinearAttention()

    def _proj(self, lin: nn.Linear, x: torch.Tensor, g: Optional[torch.Tensor]) -> torch.Tensor:
        """``lin([x, g])`` with ``x (..., T, C)`` and per-class ``g (B, T, Cg)`` broadcast over pixels."""
        d = self.hidden_dim
        if g is None:
            return lin(x)
        return F.linear(x, lin.weight[:, :d]) + F.linear(g, lin.weight[:, d:], lin.bias)

    def queries(self, x: torch.Tensor, g: Optional[torch.Tensor]) -> torch.Tensor:
        return self._proj(self.q, x, g)

    def keys_values(self, x: torch.Tensor, g: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._proj(self.k, x, g), self.v(x)


class ClassTransformerLayer(nn.Module):
    """Pre-LN linear-attention block over classes; ``(B, C, T, H, W)`` in and out."""

    def __init__(self, hidden_dim: int = 64, guidance_dim: int = 64, nheads: int = 8,
                 pooling_size: Tuple[int, int] = (4, 4), eval_pooling_size: Tuple[int, int] = (1, 1),
                 pad_len: int = 256) -> None:
        super().__init__()
        self.pooling_size = tuple(pooling_size)
        self.eval_pooling_size = tuple(eval_pooling_size)
        self.attention = AttentionLayer(hidden_dim, guidance_dim, nheads=nheads)
        self.MLP = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim * 4),
            nn.ReLU(),
            nn.Linear(hidden_dim * 4, hidden_dim),
        )
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.pad_len = pad_len
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, hidden_dim)) if pad_len > 0 else None
        self.padding_guidance = (
            nn.Parameter(torch.zeros(1, 1, guidance_dim)) if pad_len > 0 and guidance_dim > 0 else None
        )

    def current_pooling(self) -> Tuple[int, int]:
        return self.pooling_size if self.training else self.eval_pooling_size

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """Average pooling of every class slice: ``(B, C, T, H, W)`` -> ``(B, C, T, H', W')``."""
        ph, pw = self.current_pooling()
        if (ph, pw) == (1, 1):
            return x
        B, C, T, H, W = x.shape
        y = F.avg_pool2d(x.transpose(1, 2).reshape(B * T, C, H, W), (ph, pw))
        return y.reshape(B, T, C, *y.shape[-2:]).transpose(1, 2)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor],
                chunk_size: Optional[int] = None) -> torch.Tensor:
        """Args:
            x: ``(B, C, T, H, W)`` cost embedding.
            guidance: ``(B, T, Cg)`` projected text guidance, or None.
            chunk_size: classes per chunk (same result for any value).
        """
        B, C, T, H, W = x.shape
        xp = self._pool(x)
        Hp, Wp = xp.shape[-2:]
        tokens = xp.permute(0, 3, 4, 2, 1).reshape(B, Hp * Wp, T, C)  # (B, L, T, C)
        heads = self.attention.nheads
        d = C // heads
        n_pad = max(self.pad_len - T, 0) if self.padding_tokens is not None else 0
        seq_len = T + n_pad
        step = T if not chunk_size else chunk_size

        # pass 1: sum over classes of phi(k) v^T / S and phi(k)
        kv = x.new_zeros(B, Hp * Wp, heads, d, d)
        ksum = x.new_zeros(B, Hp * Wp, heads, d)
        for s in range(0, T, step):
            g = None if guidance is None else guidance[:, None, s:s + step]
            k, v = self.attention.keys_values(self.norm1(tokens[:, :, s:s + step]), g)
            k = elu_feature_map(k.reshape(*k.shape[:3], heads, d))
            v = v.reshape(*v.shape[:3], heads, d) / seq_len
            kv = kv + torch.einsum("bltha,blthc->blhac", k, v)
            ksum = ksum + k.sum(dim=2)
        if n_pad > 0:
            pad_g = None
            if guidance is not None:
                pad_g = self.padding_guidance.reshape(1, 1, -1)
            k_pad, v_pad = self.attention.keys_values(self.norm1(self.padding_tokens), pad_g)
            k_pad = elu_feature_map(k_pad.reshape(heads, d))
            v_pad = v_pad.reshape(heads, d) / seq_len
            kv = kv + n_pad * torch.einsum("ha,hc->hac", k_pad, v_pad)
            ksum = ksum + n_pad * k_pad

        # pass 2: outputs per chunk, MLP, un-pool, residual
        outs = []
        eps = self.attention.attention.eps
        for s in range(0, T, step):
            t = tokens[:, :, s:s + step]
            g = None if guidance is None else guidance[:, None, s:s + step]
            q = self.attention.queries(self.norm1(t), g)
            q = elu_feature_map(q.reshape(*q.shape[:3], heads, d))
            z = 1.0 / (torch.einsum("blthd,blhd->blth", q, ksum) + eps)
            att = torch.einsum("blthd,blhdv->blthv", q, kv) * (z * seq_len).unsqueeze(-1)
            t = t + att.reshape(t.shape)
            t = t + self.MLP(self.norm2(t))
            outs.append(t)
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, L, T, C)
        y = y.reshape(B, Hp, Wp, T, C).permute(0, 4, 3, 1, 2)  # (B, C, T, Hp, Wp)
        if (Hp, Wp) != (H, W):
            y = F.interpolate(y.transpose(1, 2).reshape(B * T, C, Hp, Wp), size=(H, W),
                              mode="bilinear", align_corners=True)
            y = y.reshape(B, T, C, H, W).transpose(1, 2)
        return x + y
