"""Category Information Supplementation: global (GCS) and local (LCS) pseudo-masks.

GCS is CAT-Seg's cosine cost volume, built with the P2Tformer-refined text when ``use_gcs`` is on.
LCS (official ``Local_align``) turns each class embedding into a softmax-normalised 3x3 kernel
over the L2-normalised image embedding: a similarity between the class and the pixel's local
neighbourhood. Both maps stay continuous (no thresholding); their embeddings are fused with the
aggregation stream. Also here: CAT-Seg's pre-selection of at most ``pad_len`` classes.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.model.dynamic_conv import per_class_conv2d
from fgaseg.model.topk import tie_copies


def cosine_cost_volume(img_feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Global cosine cost (GCS): ``(B, C, h, w)`` x ``(B, T, P, C)`` -> ``(B, P, T, h, w)``."""
    img = F.normalize(img_feats, dim=1)
    txt = F.normalize(text, dim=-1)
    return torch.einsum("bchw,btpc->bpthw", img, txt)


def kernel_normalizer(weights: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmax over the ``k*k`` taps of each channel, then divide by the tap sum (official).

    ``(..., C * k * k)`` -> ``(..., C, k, k)``; each channel is a distribution over the window.
    """
    shape = weights.shape[:-1]
    k2 = kernel_size * kernel_size
    w = weights.reshape(*shape, -1, k2).softmax(dim=-1)
    w = w.reshape(*shape, -1, kernel_size, kernel_size)
    return w / w.sum(dim=(-1, -2), keepdim=True)


class Local_align(nn.Module):  # noqa: N801 - official name, kept for checkpoint parity
    """LCS: ``Local_align(word_dim=C, vision_dim=C, kernel_size=3)``.

    ``forward(img (B, C, h, w), text (B, T, P, C)) -> (B, P, T, h, w)``: for every image, class and
    prompt, ``conv2d(normalize(img), softmax_kernel(txt(normalize(text))), bias)``.
    """

    def __init__(self, word_dim: int, vision_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.kernel_size = kernel_size
        self.out_dim = vision_dim * kernel_size * kernel_size + 1
        self.txt = nn.Linear(word_dim, self.out_dim)

    def forward(self, img_feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        img = F.normalize(img_feats, dim=1)
        B, T, P, _ = text.shape
        params = self.txt(F.normalize(text, dim=-1))  # (B, T, P, C*k*k + 1)
        weight = kernel_normalizer(params[..., :-1], self.kernel_size)  # (B, T, P, C, k, k)
        bias = params[..., -1]
        # order maps as (P, T) so the result reshapes to (B, P, T, h, w)
        weight = weight.transpose(1, 2).reshape(B, P * T, *weight.shape[-3:])
        bias = bias.transpose(1, 2).reshape(B, P * T)
        out = per_class_conv2d(img, weight, bias)
        return out.reshape(B, P, T, *out.shape[-2:])


def preselect_classes(cost: torch.Tensor, keep: int, first: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CAT-Seg's class pre-selection for more than ``pad_len`` classes.

    Keeps, per image, the ``keep`` classes with the highest maximum cosine score over prompts and
    pixels. ``cost (B, P, T, h, w)`` -> indices ``(B, keep)`` in the order of the official call
    ``score.topk(keep, dim=-1, sorted=False)`` (not sorted): the same call picks the same classes
    among equal scores, and the order decides which class wins a tie in the later TopK
    (aggregation itself is permutation-equivariant over classes). ``first (T,)``: copies of a
    class score exactly as their first copy (``fgaseg.model.topk.tie_copies``).
    """
    score = cost.permute(0, 2, 1, 3, 4).flatten(-3).max(dim=-1)[0]  # (B, T), as official
    if first is not None:
        score = tie_copies(score, first)
    return score.topk(keep, dim=-1, sorted=False)[1]


def gather_classes(x: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-image gather along the class axis ``dim`` of ``x (B, ...)`` with ``idx (B, K)``."""
    shape = [1] * x.dim()
    shape[0], shape[dim] = idx.shape[0], idx.shape[1]
    index = idx.reshape(shape).expand(*[s if i != dim else idx.shape[1] for i, s in enumerate(x.shape)])
    return torch.gather(x, dim, index)
