"""Training losses of FGAseg (official ``FGASeg.forward``).

Every map is bilinearly upsampled to the target size and compared with the one-hot target by
mean sigmoid BCE; ignore pixels are all-zero target rows (not excluded), as in CAT-Seg.
Total: ``main + 0.2 * aux0 + aux1 + aux2 + 0.02 * T2P`` (official weights; configurable).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fgaseg.errors import DatasetError
from fgaseg.model.alignment_head import one_hot_targets, t2p_loss


def check_targets(targets: torch.Tensor, num_classes: int, ignore_index: int = 255) -> None:
    """Raise DatasetError if a label is neither a class index nor ``ignore_index``."""
    if targets.dim() != 3:
        raise DatasetError(f"targets must be (B, H, W) label maps, got shape {tuple(targets.shape)}")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= num_classes))
    if bool(bad.any()):
        value = int(targets[bad][0])
        raise DatasetError(f"label {value} is outside 0..{num_classes - 1} and is not the ignore index {ignore_index}")


def bce_loss(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Mean BCE of ``(B, T, h, w)`` logits, bilinearly resized to the target ``(B, T, H, W)``."""
    if logits.shape[-2:] != onehot.shape[-2:]:
        logits = F.interpolate(logits, size=onehot.shape[-2:], mode="bilinear", align_corners=False)
    return F.binary_cross_entropy_with_logits(logits, onehot.to(logits.dtype))


def segmentation_losses(
    logits: torch.Tensor,
    aux: Sequence[Optional[torch.Tensor]],
    align_logits: Optional[torch.Tensor],
    targets: torch.Tensor,
    aux_weights: Sequence[float],
    lambda_align: float,
    ignore_index: int = 255,
) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Named (unweighted) losses and the weighted total.

    Names: ``loss_sem_seg`` (main), ``loss_aux0/1/2`` (fast decoder), ``loss_t2p`` (T2Ploss).
    """
    onehot = one_hot_targets(targets, logits.shape[1], ignore_index)
    losses = {"loss_sem_seg": bce_loss(logits, onehot)}
    total = losses["loss_sem_seg"]
    for i, (a, w) in enumerate(zip(aux, aux_weights)):
        if a is not None:
            losses[f"loss_aux{i}"] = bce_loss(a, onehot)
            total = total + w * losses[f"loss_aux{i}"]
    if align_logits is not None:
        losses["loss_t2p"] = t2p_loss(align_logits, onehot)
        total = total + lambda_align * losses["loss_t2p"]
    return losses, total
