"""P2Tformer: text embeddings cross-attend to the dense CLIP image tokens (Pixel-Level Alignment).

Official ``P2Tformer.py`` (text-only variant). Each class embedding is a query; keys are image
tokens plus a sine positional encoding, values the plain image tokens. A layer is
``t = LayerNorm(t + MLP(attn(t, img + pos, img)))`` (post-LN, no FFN); the result is
``F_t' = F_t + gamma * t`` with a per-channel ``gamma`` initialised to 0.1.

Queries never attend to each other, so every class (and prompt) is refined independently of the
others: the class list can be processed in any order and in chunks with identical results.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from fgaseg.model.position_encoding import PositionEmbeddingSine


class ShortCut_CrossAttention(nn.Module):  # noqa: N801 - official name, kept for checkpoint parity
    """One text-queries-image cross-attention layer with a post-LayerNorm residual."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        # The official code Xavier-initialises before creating MLP, so MLP keeps the default init.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.MLP = nn.Linear(d_model, d_model)

    def forward(self, text: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``text (B, L, C)``, ``keys``/``values (B, hw, C)`` -> ``(B, L, C)``."""
        attended = self.multihead_attn(text, keys, values, need_weights=False)[0]
        return self.norm(text + self.MLP(attended))


class P2Tformer(nn.Module):
    """Refines class text embeddings with the image: ``(T, P, C)`` + ``(B, C, h, w)`` -> ``(B, T, P, C)``."""

    def __init__(self, d_model: int, nhead: int = 8, num_layers: int = 1, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.pe_layer = PositionEmbeddingSine(d_model // 2, normalize=True)
        self.cross_atten_text = nn.ModuleList(
            [ShortCut_CrossAttention(d_model, nhead) for _ in range(num_layers)]
        )
        self.gamma_text = nn.Parameter(torch.ones(d_model) * gamma_init)

    def forward(self, img_feats: torch.Tensor, text: torch.Tensor,
                chunk_size: Optional[int] = None) -> torch.Tensor:
        """Args:
            img_feats: ``(B, C, h, w)`` dense CLIP image embedding.
            text: ``(T, P, C)`` class embeddings shared by the batch, or ``(B, T, P, C)``.
            chunk_size: process at most this many classes at a time (same result).
        Returns:
            ``(B, T, P, C)`` refined text embeddings (not re-normalised, as official).
        """
        B, C, h, w = img_feats.shape
        if text.dim() == 3:
            text = text.unsqueeze(0).expand(B, -1, -1, -1)
        T, P = text.shape[1], text.shape[2]
        pos = self.pe_layer.grid(h, w, img_feats.device).to(img_feats.dtype)
        values = img_feats.flatten(2).transpose(1, 2)  # (B, hw, C)
        keys = values + pos.flatten(1).t().unsqueeze(0)
        queries = text.reshape(B, T * P, C)
        step = T * P if not chunk_size else max(1, chunk_size * P)
        outs = []
        for start in range(0, T * P, step):
            t0 = queries[:, start:start + step]
            t = t0
            for layer in self.cross_atten_text:
                t = layer(t, keys, values)
            outs.append(t0 + self.gamma_text * t)
        refined = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return refined.reshape(B, T, P, C)
