"""TopK class selection of the streamlined ("fast") decoder.

A class is kept if it is among the ``k`` highest-scoring classes of at least one pixel of at
least one image of the batch (official ``get_valid_idx_from_mask``: the union is shared by the
batch, which at test time holds the sliding-window views of one image). ``k >= T`` keeps every
class, so the pruned pipeline then equals the full one exactly.

Ties: the official code ranks with ``torch.argsort(aux, dim=1, descending=True)[:, :k]`` on the
contiguous ``(B, T, H, W)`` aux map. ``topk`` and ``sort(stable=True)`` order equal scores
differently (and so does argsort on other devices), so we make exactly that call on a tensor of
the same shape and layout: equal scores (e.g. duplicated class names) then resolve as in the
official code on the same device.
"""

from __future__ import annotations

import torch


def topk_class_mask(aux_logits: torch.Tensor, k: int) -> torch.Tensor:
    """``aux_logits (B, T, H, W)`` -> bool ``(T,)``: classes in some pixel's top-k."""
    T = aux_logits.shape[1]
    if k >= T:  # argsort(...)[:, :k] would hold every class
        return torch.ones(T, dtype=torch.bool, device=aux_logits.device)
    order = torch.argsort(aux_logits.contiguous(), dim=1, descending=True)  # official call
    return torch.bincount(order[:, :k].reshape(-1), minlength=T) > 0


def keep_indices(aux_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(K,)`` (ascending) of the classes kept by :func:`topk_class_mask`."""
    return topk_class_mask(aux_logits, k).nonzero().flatten()
