"""The modified last vision block of each training-free method.

Each function maps the input of CLIP's last residual block ``x (B, 1 + h*w, W)`` to the tokens
that go into ``ln_post`` and ``proj``, using only the block's parameters (``ln_1``, ``ln_2``,
``mlp``, ``attn.q_proj_weight``/``k_proj_weight``/``v_proj_weight``, ``attn.in_proj_bias``,
``attn.out_proj``). Residual and feed-forward choices follow each paper's released code:

============  ==========================================  ==========  ==========
method        attention                                   residual    FFN
============  ==========================================  ==========  ==========
maskclip      identity (value path ``out_proj(v)``)        kept        kept
sclip         ``softmax(qq^T) + softmax(kk^T)``            kept        kept
clearclip     ``softmax(qq^T)``                            dropped     dropped
naclip        ``softmax(kk^T + Gaussian prior)``           dropped     dropped
============  ==========================================  ==========  ==========
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.training_free.attention import (
    correlative_attention,
    identity_attention,
    neighbourhood_attention,
    query_query_attention,
)

Grid = Tuple[int, int]


def project_qkv_heads(
    block: nn.Module, x: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ln_1`` then the q/k/v projections, split into heads: three ``(B, heads, L, d)``."""
    attn = block.attn
    y = block.ln_1(x)
    bias_q, bias_k, bias_v = attn.in_proj_bias.chunk(3)
    b, length, width = y.shape
    heads = attn.num_heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, length, heads, width // heads).transpose(1, 2)

    return (
        split(F.linear(y, attn.q_proj_weight, bias_q)),
        split(F.linear(y, attn.k_proj_weight, bias_k)),
        split(F.linear(y, attn.v_proj_weight, bias_v)),
    )


def merge_heads_and_project(block: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """``(B, heads, L, d)`` -> ``out_proj`` of the merged heads ``(B, L, W)``."""
    b, heads, length, d = out.shape
    return block.attn.out_proj(out.transpose(1, 2).reshape(b, length, heads * d))


def _residual_and_ffn(block: nn.Module, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    y = x + attended
    return y + block.mlp(block.ln_2(y))


def maskclip_last_block(block: nn.Module, x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """MaskCLIP: ``y = x + out_proj(v)``, then ``y + mlp(ln_2(y))`` (official MaskCLIP code).

    Queries and keys are skipped. Unlike CAT-Seg's variant (CLS-only residual), each token
    keeps its own residual, as in MaskCLIP's ``return_qkv`` path.
    """
    q, k, v = project_qkv_heads(block, x)
    attended = merge_heads_and_project(block, identity_attention(q, k, v))
    return _residual_and_ffn(block, x, attended)


def sclip_last_block(block: nn.Module, x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """SCLIP: correlative self-attention with the block's residual and FFN kept."""
    q, k, v = project_qkv_heads(block, x)
    attended = merge_heads_and_project(block, correlative_attention(q, k, v))
    return _residual_and_ffn(block, x, attended)


def clearclip_last_block(block: nn.Module, x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """ClearCLIP: ``out_proj(softmax(q q^T) v)`` alone - no residual, no FFN."""
    q, k, v = project_qkv_heads(block, x)
    return merge_heads_and_project(block, query_query_attention(q, k, v))


def naclip_last_block(
    block: nn.Module, x: torch.Tensor, grid: Grid, gaussian_std: float = 5.0
) -> torch.Tensor:
    """NACLIP: ``out_proj(softmax(k k^T + G) v)`` alone - no residual, no FFN."""
    q, k, v = project_qkv_heads(block, x)
    attended = neighbourhood_attention(q, k, v, grid, std=gaussian_std)
    return merge_heads_and_project(block, attended)


LAST_BLOCKS: Dict[str, Callable[..., torch.Tensor]] = {
    "maskclip": maskclip_last_block,
    "sclip": sclip_last_block,
    "clearclip": clearclip_last_block,
    "naclip": naclip_last_block,
}

# Logit scales (multipliers of the cosine similarity): SCLIP, ClearCLIP and NACLIP use these in
# their released code; for MaskCLIP (whose labels are argmaxes) we use CLIP's trained scale, 100.
DEFAULT_LOGIT_SCALES: Dict[str, float] = {
    "maskclip": 100.0,
    "sclip": 40.0,
    "clearclip": 50.0,
    "naclip": 40.0,
}
