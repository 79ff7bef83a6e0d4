"""Confusion-matrix metrics vs torchmetrics and a hand-computed case."""

import math

import pytest
import torch

from fgaseg.eval.metrics import ConfusionMatrix, metrics_from_confusion


def test_hand_computed_case():
    # gt:   0 0 1 1 | 2 255      pred: 0 1 1 1 | 0 2     (class 3 absent from both)
    gt = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    r = cm.compute(["a", "b", "c", "d"])
    # IoU a = 1 / (2 + 2 - 1) = 1/3, b = 2 / (2 + 3 - 2) = 2/3, c = 0 / (1 + 0 - 0) = 0, d: none
    assert r["per_class_iou"]["a"] == pytest.approx(100 / 3)
    assert r["per_class_iou"]["b"] == pytest.approx(200 / 3)
    assert r["per_class_iou"]["c"] == 0.0 and r["per_class_iou"]["d"] is None
    assert r["mIoU"] == pytest.approx(100 / 3)                  # (1/3 + 2/3 + 0) / 3
    assert r["pACC"] == pytest.approx(60.0)                     # 3 of 5 labelled pixels
    assert r["fwIoU"] == pytest.approx(100 * (2 * (1 / 3) + 2 * (2 / 3) + 1 * 0) / 5)
    assert r["mACC"] == pytest.approx(100 * (0.5 + 1.0 + 0.0) / 3)
    assert r["num_classes_present"] == 3 and r["num_pixels"] == 5


def test_predicted_but_absent_class_is_not_averaged():
    """detectron2 convention: a class with no GT pixels is left out of the mean."""
    gt = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 1, 1])          # class 1 predicted, never in GT
    r = metrics_from_confusion(_cm(pred, gt, 3))
    assert r["per_class_iou"]["1"] is None
    assert r["mIoU"] == pytest.approx(50.0)    # only class 0: 2 / 4


def _cm(pred, gt, k):
    cm = ConfusionMatrix(k)
    cm.update(pred, gt)
    return cm.matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_on_random_predictions(seed):
    tm = pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(seed)
    k = 12
    # classes 9..11 never appear in GT; 10 and 11 are never predicted either; 9 is predicted
    gt = torch.randint(0, 9, (3, 40, 50), generator=g)
    gt[torch.rand(gt.shape, generator=g) < 0.1] = 255
    pred = torch.randint(0, 10, (3, 40, 50), generator=g)
    agree = torch.rand(pred.shape, generator=g) < 0.4
    pred = torch.where(agree & (gt != 255), gt, pred)

    cm = ConfusionMatrix(k)
    for i in range(3):   # accumulate image by image
        cm.update(pred[i], gt[i])
    reference = MulticlassConfusionMatrix(k, ignore_index=255)(pred, gt)
    assert torch.equal(cm.matrix, reference)

    ours = cm.compute()
    per_class = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, gt)
    present = torch.bincount(gt[gt != 255].flatten(), minlength=k) > 0
    for c in range(k):
        value = ours["per_class_iou"][str(c)]
        if present[c]:
            assert value == pytest.approx(100 * float(per_class[c]), abs=1e-4)
        else:
            assert value is None
    assert ours["mIoU"] == pytest.approx(100 * float(per_class[present].mean()), abs=1e-4)
    accuracy = tm.classification.MulticlassAccuracy(k, average="micro", ignore_index=255)
    assert ours["pACC"] == pytest.approx(100 * float(accuracy(pred, gt)), abs=1e-4)


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="class ids"):
        cm.update(torch.tensor([3]), torch.tensor([0]))
    empty = ConfusionMatrix(3).compute()
    assert math.isnan(empty["mIoU"])
