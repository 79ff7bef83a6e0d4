"""Transformer building blocks of OpenAI's CLIP, batch-first, with q/k/v-split attention.

Parameter names match OpenAI's checkpoints as modified by CAT-Seg (``attn.q_proj_weight``,
``attn.k_proj_weight``, ``attn.v_proj_weight``, packed ``attn.in_proj_bias``, ``attn.out_proj``),
so OpenAI / CAT-Seg / FGA-seg weights map 1:1 and q/v can be fine-tuned separately.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as OpenAI's, so half-precision towers stay stable), or in
    float64 when the model was converted to it (precision checks, e.g. the official parity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if self.weight is not None and self.weight.dtype == torch.float64 else torch.float32
        return super().forward(x.to(dtype)).to(x.dtype)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v weights and a packed ``in_proj_bias``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.num_heads = heads
        self.q_proj_weight = nn.Parameter(torch.empty(width, width))
        self.k_proj_weight = nn.Parameter(torch.empty(width, width))
        self.v_proj_weight = nn.Parameter(torch.empty(width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input projections: ``(B, L, W)`` -> q, k, v each ``(B, L, W)`` (heads not split)."""
        bias_q, bias_k, bias_v = self.in_proj_bias.chunk(3)
        return (
            F.linear(x, self.q_proj_weight, bias_q),
            F.linear(x, self.k_proj_weight, bias_k),
            F.linear(x, self.v_proj_weight, bias_v),
        )

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, W)`` -> ``(B, heads, L, W // heads)``."""
        b, length, _ = x.shape
        return x.reshape(b, length, self.num_heads, -1).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, L, d)`` -> ``(B, L, heads * d)``."""
        b, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(b, length, -1)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, L, W)`` -> ``(B, L, W)``; ``attn_mask`` is additive ``(L, L)`` (or boolean)."""
        q, k, v = (self.split_heads(t) for t in self.project_qkv(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(self.merge_heads(out))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, L, W)`` -> ``(B, L, W)``."""
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """CAT-Seg's dense last block: the value path only, with the input CLS as residual.

        ``v' = out_proj(v(ln_1(x))) + x[:, :1]`` then ``v' + mlp(ln_2(v'))``; ``(B, L, W)`` in/out.
        (CAT-Seg also pushes q and k through ``out_proj`` but never uses them.)
        """
        _, _, v = self.attn.project_qkv(self.ln_1(x))
        v = self.attn.out_proj(v) + x[:, :1]
        return v + self.mlp(self.ln_2(v))


class Transformer(nn.Module):
    """A stack of residual attention blocks (``resblocks``), batch-first."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: Optional[torch.Tensor] = None,
        dense_last_block: bool = False,
        return_layers: Sequence[int] = (),
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the blocks on ``(B, L, W)``; also return outputs of the blocks in ``return_layers``.

        With ``dense_last_block`` the last block runs :meth:`ResidualAttentionBlock.forward_dense`.
        """
        wanted = set(return_layers)
        collected = {}
        last = len(self.resblocks) - 1
        for i, block in enumerate(self.resblocks):
            if dense_last_block and i == last:
                x = block.forward_dense(x)
            else:
                x = block(x, attn_mask)
            if i in wanted:
                collected[i] = x
        return x, [collected[i] for i in return_layers]


def init_transformer_(transformer: Transformer) -> None:
    """OpenAI's initialisation of a CLIP transformer (normal with width/depth-scaled stds)."""
    width, layers = transformer.width, transformer.layers
    attn_std = width**-0.5
    proj_std = attn_std * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    for block in transformer.resblocks:
        for weight in (block.attn.q_proj_weight, block.attn.k_proj_weight, block.attn.v_proj_weight):
            nn.init.normal_(weight, std=attn_std)
        nn.init.zeros_(block.attn.in_proj_bias)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.zeros_(block.attn.out_proj.bias)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
