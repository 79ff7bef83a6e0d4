"""Confusion-matrix segmentation metrics (the detectron2 ``SemSegEvaluator`` conventions).

The confusion matrix ``M (K, K)`` counts pixels with ground truth ``i`` (row) predicted as ``j``
(column); pixels whose ground truth is not a class id in ``[0, K)`` (255, 65535, ...) are
ignored entirely. From it, with ``TP_c = M[c, c]``, ``GT_c = sum_j M[c, j]``,
``PRED_c = sum_i M[i, c]``:

- ``IoU_c = TP_c / (GT_c + PRED_c - TP_c)`` and ``Acc_c = TP_c / GT_c`` are defined only for
  classes with ground-truth pixels (``GT_c > 0``); others are reported as ``None``/NaN;
- ``mIoU`` and ``mACC`` average over those classes. A class that is predicted but absent from
  the ground truth therefore does not enter the mean (its false positives still lower the IoU
  of the classes they were taken from), exactly as detectron2 (used by CAT-Seg / FGA-seg)
  computes it; torchmetrics' ``MulticlassJaccardIndex`` would count such a class as IoU 0;
- ``fwIoU = sum_c GT_c * IoU_c / sum_c GT_c``; ``pACC = sum_c TP_c / sum_c GT_c``.

Results are in percent, like detectron2's.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from fgaseg.train import distributed as dist_utils


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` int64 confusion matrix on ``device``."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = int(num_classes)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64,
                                  device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add one or more images: ``prediction`` and ``target`` integer tensors of equal shape.

        Target values outside ``[0, K)`` are ignored; predictions must lie in ``[0, K)``."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        k = self.num_classes
        prediction = prediction.to(self.matrix.device).long().flatten()
        target = target.to(self.matrix.device).long().flatten()
        valid = (target >= 0) & (target < k)
        prediction, target = prediction[valid], target[valid]
        if prediction.numel() and (prediction.min() < 0 or prediction.max() >= k):
            raise ValueError(f"predictions must be class ids in [0, {k})")
        self.matrix += torch.bincount(target * k + prediction, minlength=k * k).view(k, k)

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the matrices of all processes (no-op without torch.distributed)."""
        dist_utils.all_reduce_sum(self.matrix)
        return self

    def compute(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        return metrics_from_confusion(self.matrix, class_names)


def metrics_from_confusion(matrix: torch.Tensor,
                           class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """mIoU, fwIoU, mACC, pACC and per-class IoU / accuracy (percent) from ``M[gt, pred]``."""
    m = matrix.detach().double().cpu()
    k = m.shape[0]
    names: List[str] = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    tp = m.diag()
    gt = m.sum(1)
    pred = m.sum(0)
    union = gt + pred - tp
    valid = gt > 0
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(valid, tp / union.clamp(min=1), nan)
    acc = torch.where(valid, tp / gt.clamp(min=1), nan)
    total = gt.sum()
    has_gt = bool(valid.any())

    def percent(x: torch.Tensor) -> float:
        return float(x) * 100.0

    return {
        "mIoU": percent(iou[valid].mean()) if has_gt else float("nan"),
        "fwIoU": percent((iou[valid] * gt[valid]).sum() / total) if has_gt else float("nan"),
        "mACC": percent(acc[valid].mean()) if has_gt else float("nan"),
        "pACC": percent(tp.sum() / total) if has_gt else float("nan"),
        "num_classes": k,
        "num_classes_present": int(valid.sum()),
        "num_pixels": int(total),
        "per_class_iou": {n: (percent(v) if ok else None) for n, v, ok in zip(names, iou, valid)},
        "per_class_acc": {n: (percent(v) if ok else None) for n, v, ok in zip(names, acc, valid)},
    }
