"""TopK class selection of the streamlined ("fast") decoder.

A class is kept if it is among the ``k`` highest-scoring classes of at least one pixel of at
least one image of the batch (official ``get_valid_idx_from_mask``: the union is shared by the
batch, which at test time holds the sliding-window views of one image). ``k >= T`` keeps every
class; the decoder then skips TopK altogether, so the result equals the unpruned one exactly.
"""

from __future__ import annotations

import torch


def topk_class_mask(aux_logits: torch.Tensor, k: int) -> torch.Tensor:
    """``aux_logits (B, T, H, W)`` -> bool ``(T,)``: classes in some pixel's top-k."""
    T = aux_logits.shape[1]
    if k >= T:
        return torch.ones(T, dtype=torch.bool, device=aux_logits.device)
    idx = aux_logits.topk(k, dim=1).indices.flatten()
    return torch.bincount(idx, minlength=T) > 0


def keep_indices(aux_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(K,)`` (ascending) of the classes kept by :func:`topk_class_mask`."""
    return topk_class_mask(aux_logits, k).nonzero().flatten()
