"""TopK class selection of the streamlined ("fast") decoder.

A class is kept if it is among the ``k`` highest-scoring classes of at least one pixel of at
least one image of the batch (official ``get_valid_idx_from_mask``: the union is shared by the
batch, which at test time holds the sliding-window views of one image). ``k >= T`` keeps every
class; the decoder then skips TopK altogether, so the result equals the unpruned one exactly
(``topk=0``), bit for bit.

Ties: the official code ranks with ``torch.argsort(aux, dim=1, descending=True)[:, :k]`` on the
contiguous ``(B, T, H, W)`` aux map. ``topk`` and ``sort(stable=True)`` order equal scores
differently (and so does argsort on other devices), so we make exactly that call on a tensor of
the same shape and layout: equal scores (e.g. duplicated class names) then resolve as in the
official code on the same device.
"""

from __future__ import annotations

from typing import Optional

import torch


def topk_class_mask(aux_logits: torch.Tensor, k: int, first: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``aux_logits (B, T, H, W)`` -> bool ``(T,)``: classes in some pixel's top-k.

    ``first (T,)`` or ``(B, T)``: first copy of every class (:func:`first_positions`); copies
    are then ranked with their first copy's scores, i.e. tied exactly (see below)."""
    T = aux_logits.shape[1]
    if k >= T:  # argsort(...)[:, :k] would hold every class
        return torch.ones(T, dtype=torch.bool, device=aux_logits.device)
    if first is not None:
        aux_logits = tie_copies(aux_logits, first)
    order = torch.argsort(aux_logits.contiguous(), dim=1, descending=True)  # official call
    return torch.bincount(order[:, :k].reshape(-1), minlength=T) > 0


def keep_indices(aux_logits: torch.Tensor, k: int, first: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices ``(K,)`` (ascending) of the classes kept by :func:`topk_class_mask`."""
    return topk_class_mask(aux_logits, k, first).nonzero().flatten()


# ----------------------------------------------------------------------------- exact ties
# Classes with identical text (a name listed twice, e.g. 10 first synonyms of ADE-847) have
# equal scores in exact arithmetic, and the official code (whole-batch kernels) computes them
# bit-identically, so its argsort breaks their ties by position. Our chunked kernels can differ
# in the last bits between two copies, which would turn the tie into a coin flip; so before
# ranking, every copy takes the scores of its first occurrence (a no-op in exact arithmetic).

def _graph_capture() -> bool:
    """True while tracing / compiling / exporting (data-dependent shapes are not allowed)."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def class_copies(text: torch.Tensor) -> Optional[torch.Tensor]:
    """:func:`duplicate_ids` of ``text``, or None while a graph is captured (export / compile:
    the exported graph has no TopK, and its pre-selection ranks copies as they come)."""
    return None if _graph_capture() else duplicate_ids(text)


def duplicate_ids(text: torch.Tensor) -> torch.Tensor:
    """``text (T, ...)`` -> ``(T,)`` int64: index of the first class with a bit-identical row."""
    rows = text.reshape(text.shape[0], -1)
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return first_positions(inverse)


def first_positions(ids: torch.Tensor) -> torch.Tensor:
    """``ids (..., N)`` -> ``(..., N)``: for every position, the first position with the same id
    (along the last dim)."""
    N = ids.shape[-1]
    flat = ids.reshape(-1, N)
    pos = torch.arange(N, device=ids.device).expand_as(flat)
    out = torch.empty_like(flat)
    for r in range(flat.shape[0]):
        first = torch.full((int(flat[r].max()) + 1,), N, dtype=torch.long, device=ids.device)
        first.scatter_reduce_(0, flat[r], pos[r], reduce="amin")
        out[r] = first[flat[r]]
    return out.reshape(ids.shape)


def tie_copies(scores: torch.Tensor, first: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``scores (B, T, ...)`` with every class replaced by its first copy; ``first (T,)`` or
    ``(B, T)`` from :func:`first_positions`. Returns ``scores`` itself when there are no copies."""
    T = scores.shape[dim]
    if bool((first == torch.arange(T, device=first.device)).all()):
        return scores
    shape = [1] * scores.dim()
    shape[dim] = T
    if first.dim() == 2:
        shape[0] = first.shape[0]
    index = first.reshape(shape).expand(scores.shape)
    return torch.gather(scores, dim, index)
