"""Stage 3: open-vocabulary evaluation on held-out scenes (argmax over all 72 phrases).

mIoU is computed from one confusion matrix over the whole test set; background pixels (255)
are ignored. "seen" averages the IoU of the 54 seen classes, "unseen" that of the 18 held-out
compositions, "hIoU" is their harmonic mean. Classes absent from the test set's ground truth
are left out of the means.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from fgaseg.synth.world import SceneSet


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """``(C, C) int64`` counts, rows = ground truth, columns = prediction."""
    valid = truth != ignore
    index = truth[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU ``(C,)``; NaN for classes that never occur in the ground truth."""
    tp = np.diag(confusion).astype(np.float64)
    gt = confusion.sum(1)
    union = gt + confusion.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    iou[gt == 0] = np.nan
    return iou


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)


def summarize(confusion: np.ndarray, unseen_mask: np.ndarray) -> Dict[str, float]:
    """mIoU (percent) for seen, unseen, all classes, their harmonic mean and pixel accuracy."""
    iou = iou_per_class(confusion) * 100
    seen = float(np.nanmean(iou[~unseen_mask])) if np.isfinite(iou[~unseen_mask]).any() else float("nan")
    unseen = float(np.nanmean(iou[unseen_mask])) if np.isfinite(iou[unseen_mask]).any() else float("nan")
    return {
        "mIoU_seen": seen,
        "mIoU_unseen": unseen,
        "hIoU": harmonic_mean(seen, unseen),
        "mIoU_all": float(np.nanmean(iou)),
        "pixel_acc": float(np.diag(confusion).sum() / max(1, confusion.sum()) * 100),
    }


ATTRIBUTES = ("colour", "pattern", "shape")


def attribute_accuracy(confusion: np.ndarray, attributes: Sequence[Sequence[int]]) -> Dict[str, float]:
    """Pixel accuracy (percent) of each attribute: predicted class shares the true one's value.

    ``attributes[c]`` is class ``c``'s ``(colour, pattern, shape)`` indices. Read off the
    confusion matrix, so a pixel labelled "red dotted square" where the truth is "red solid
    square" counts as right in colour and shape and wrong in pattern.
    """
    attrs = np.asarray(attributes)
    total = max(1, int(confusion.sum()))
    return {
        name: float(confusion[attrs[:, k][:, None] == attrs[:, k][None, :]].sum() / total * 100)
        for k, name in enumerate(ATTRIBUTES)
    }


def attribute_chance(attributes: Sequence[Sequence[int]]) -> Dict[str, float]:
    """Accuracy (percent) of guessing each attribute uniformly: 100 / number of values."""
    attrs = np.asarray(attributes)
    return {name: 100.0 / len(np.unique(attrs[:, k])) for k, name in enumerate(ATTRIBUTES)}


def predict_labels(
    segmenter, scenes: SceneSet, indices: Sequence[int], class_names: Sequence[str], **kwargs
) -> np.ndarray:
    """Argmax labels ``(B, H, W)`` of ``segmenter.segment_logits`` for the given scenes."""
    images, _ = scenes.batch(indices)
    device = getattr(segmenter, "device", torch.device("cpu"))
    with torch.no_grad():
        logits = segmenter.segment_logits(images.to(device), list(class_names), **kwargs)
    return logits.argmax(1).cpu().numpy()


def evaluate(
    segmenter, scenes: SceneSet, batch_size: int = 32, progress: bool = True,
    desc: str = "stage 3/3: evaluate", on_batch: Optional[Callable[[int], None]] = None, **kwargs,
) -> Dict[str, float]:
    """mIoU of ``segmenter`` on ``scenes`` with all phrases as the vocabulary.

    ``kwargs`` go to ``segment_logits`` (e.g. ``topk=8``; then images go one at a time).
    Returns the :func:`summarize` numbers plus ``per_class`` IoU and ``seconds``.
    """
    from tqdm.auto import tqdm

    segmenter.eval()
    if kwargs.get("topk"):
        # TopK keeps the union of classes over all pixels of a batch (the views of ONE image in
        # the official code), so pruning must see one image at a time
        batch_size = 1
    vocab = scenes.vocab
    start = time.time()
    confusion = np.zeros((vocab.num_classes, vocab.num_classes), dtype=np.int64)
    batches = range(0, len(scenes), batch_size)
    for begin in tqdm(batches, desc=desc, disable=not progress, leave=False, mininterval=1.0):
        indices = list(range(begin, min(len(scenes), begin + batch_size)))
        pred = predict_labels(segmenter, scenes, indices, vocab.phrases, **kwargs)
        confusion += confusion_matrix(pred, scenes.labels[indices], vocab.num_classes)
        if on_batch is not None:
            on_batch(len(indices))
    result = summarize(confusion, vocab.is_unseen())
    result["attributes"] = attribute_accuracy(confusion, vocab.attributes)
    iou = iou_per_class(confusion) * 100
    result["per_class"] = {p: (None if np.isnan(v) else round(float(v), 2)) for p, v in zip(vocab.phrases, iou)}
    result["seconds"] = round(time.time() - start, 1)
    return result
