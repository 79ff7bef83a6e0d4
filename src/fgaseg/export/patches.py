"""Export-time stand-ins for code the ONNX exporters cannot translate (numerically identical).

What blocks a plain ``torch.onnx.export`` of ``FGASeg.segment_logits`` (torch 2.13):

- dynamo exporter (onnxscript): ``aten::scaled_dot_product_attention`` is only translated for
  4-D q/k/v; FGASeg's Swin / class aggregation calls it with 5-D tensors ``(B, T, heads, L, C)``.
  `explicit_attention` replaces it with ``softmax(q k^T * scale + mask) v`` while exporting.
- TorchScript exporter (``dynamo=False``): shapes become traced tensors, so
  ``out[:, s:s + step] = ...`` with ``step`` computed from the input size, in-place
  accumulation into buffers sized by ``x.shape`` and ``q.expand(B, T, Hp, Wp, C)`` in the Swin
  block end in "ONNX Expand input shape constraint not satisfied"; and CLIP's
  ``round(pos.shape[0] ** 0.5)`` fails (a traced size has no ``__round__``, fixed by
  `static_positional_embedding`). FGASeg therefore needs the dynamo exporter; plain CLIP
  segmenters work with either.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attn_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0,
               is_causal: bool = False, scale: Optional[float] = None,
               enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` for any rank, written with matmul and softmax."""
    if enable_gqa:
        raise NotImplementedError("grouped-query attention is not supported for export")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        length, source = query.shape[-2], key.shape[-2]
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return scores.softmax(dim=-1) @ value


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Route ``F.scaled_dot_product_attention`` through `_attention` inside the block."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@contextlib.contextmanager
def static_positional_embedding(module: nn.Module) -> Iterator[None]:
    """Give every ViT tower in `module` a trace-safe ``resized_positional_embedding``."""
    patched = []
    for sub in module.modules():
        if hasattr(sub, "resized_positional_embedding") and hasattr(sub, "positional_embedding"):
            sub.resized_positional_embedding = _static_resize(sub)
            patched.append(sub)
    try:
        yield
    finally:
        for sub in patched:
            del sub.resized_positional_embedding  # back to the class method


def _static_resize(tower: nn.Module):
    def resized(grid: tuple[int, int]) -> torch.Tensor:
        pos = tower.positional_embedding
        side = math.isqrt(int(pos.shape[0]) - 1)
        grid = (int(grid[0]), int(grid[1]))
        if (side, side) == grid:
            return pos
        patch_pos = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=grid, mode="bicubic",
                                  align_corners=False).to(pos.dtype)
        return torch.cat([pos[:1], patch_pos.reshape(pos.shape[1], -1).t()], dim=0)

    return resized
