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


def _residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + y``, in place (no new large temporary) when no gradient is being recorded."""
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        return x + y
    return x.add_(y)


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

    def fused_qkv(self, guided: bool) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """``(W (3C, C), b (3C,), Wg (2C, Cg) | None)``: one GEMM gives q|k|v from the tokens; the
        guidance half of q|k (``Wg``) is per class and added separately."""
        d = self.hidden_dim
        if not guided:
            w = torch.cat([self.q.weight, self.k.weight, self.v.weight], dim=0)
            return w, torch.cat([self.q.bias, self.k.bias, self.v.bias]), None
        w = torch.cat([self.q.weight[:, :d], self.k.weight[:, :d], self.v.weight], dim=0)
        wg = torch.cat([self.q.weight[:, d:], self.k.weight[:, d:]], dim=0)
        return w, torch.cat([self.q.bias, self.k.bias, self.v.bias]), wg


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
        L = Hp * Wp
        tokens = xp.permute(0, 3, 4, 2, 1).reshape(B, L, T, C)  # (B, L, T, C)
        heads = self.attention.nheads
        d = C // heads
        n_pad = max(self.pad_len - T, 0) if self.padding_tokens is not None else 0
        step = T if not chunk_size else chunk_size
        guided = guidance is not None
        w, bias, wg = self.attention.fused_qkv(guided)
        gqk = F.linear(guidance, wg) if guided else None  # (B, T, 2C), per class

        # pass 1: q (kept), and sum over classes of phi(k) v^T and phi(k). The official code
        # divides v by the sequence length and multiplies the output back; that cancels exactly.
        kv = x.new_zeros(B, L, heads, d, d)
        ksum = x.new_zeros(B, L, heads, 1, d)
        queries = []
        for s in range(0, T, step):
            qkv = F.linear(self.norm1(tokens[:, :, s:s + step]), w, bias)  # (B, L, t, 3C)
            if gqk is not None:
                qkv[..., : 2 * C] += gqk[:, None, s:s + step].to(qkv.dtype)
            qkv = qkv.view(*qkv.shape[:3], 3, heads, d).permute(3, 0, 1, 4, 2, 5)  # (3, B, L, h, t, d)
            k = elu_feature_map(qkv[1])
            kv = kv + k.transpose(-1, -2) @ qkv[2]
            ksum = ksum + k.sum(dim=-2, keepdim=True)
            queries.append(elu_feature_map(qkv[0]))
        if n_pad > 0:
            pad = self.norm1(self.padding_tokens.reshape(1, C))
            qkv_pad = F.linear(pad, w, bias).reshape(3 * C)
            if guided:
                qkv_pad = qkv_pad.clone()
                qkv_pad[: 2 * C] += F.linear(self.padding_guidance.reshape(1, -1), wg).reshape(2 * C)
            k_pad = elu_feature_map(qkv_pad[C:2 * C].reshape(heads, 1, d))
            v_pad = qkv_pad[2 * C:].reshape(heads, 1, d)
            kv = kv + n_pad * (k_pad.transpose(-1, -2) @ v_pad)
            ksum = ksum + n_pad * k_pad

        # pass 2: outputs per chunk, MLP, residuals (official: x + pool^-1(t + att + mlp))
        eps = self.attention.attention.eps
        fc1, fc2 = self.MLP[0], self.MLP[2]
        outs = []
        for i, s in enumerate(range(0, T, step)):
            q = queries[i]
            queries[i] = None
            z = (q @ ksum.transpose(-1, -2)).add_(eps).reciprocal_()  # (B, L, h, t, 1)
            t = (q @ kv).mul_(z).transpose(2, 3).reshape(B, L, -1, C)  # attention output (a copy)
            t = _residual(t, tokens[:, :, s:s + step])
            hidden = F.linear(self.norm2(t), fc1.weight, fc1.bias).relu_()
            t = _residual(t, F.linear(hidden, fc2.weight, fc2.bias))
            del hidden
            outs.append(t)
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, L, T, C)
        del outs
        if (Hp, Wp) == (H, W):
            y = _residual(y, tokens)
            return y.view(B, H, W, T, C).permute(0, 4, 3, 1, 2)
        y = y.reshape(B, Hp, Wp, T, C).permute(0, 4, 3, 1, 2)  # (B, C, T, Hp, Wp)
        y = F.interpolate(y.transpose(1, 2).reshape(B * T, C, Hp, Wp), size=(H, W),
                          mode="bilinear", align_corners=True)
        y = y.reshape(B, T, C, H, W).transpose(1, 2)
        return x + y
