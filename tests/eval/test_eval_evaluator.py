"""The evaluation loop: resize/argmax, VOC-20b mapping, CLI with a training-free segmenter."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgaseg.data import build_dataset
from fgaseg.eval import EvalSettings, argmax_resized, evaluate


class ConstantSegmenter:
    """Scores class ``c`` highest everywhere; records the sizes it was called with."""

    def __init__(self, c, num_names):
        self.c, self.num_names, self.calls = c, num_names, []

    device = torch.device("cpu")

    def eval(self):
        return self

    def segment_logits(self, images, class_names, *, sliding=False, topk=None):
        assert len(class_names) == self.num_names
        self.calls.append((tuple(images.shape), sliding, topk))
        scores = torch.zeros(images.shape[0], self.num_names, *images.shape[-2:])
        scores[:, self.c] = 1.0
        return scores


def folder(tmp_path, labels, names=("a", "b", "c")):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(names))
    for i, label in enumerate(labels):
        label = np.asarray(label, np.uint8)
        Image.fromarray(np.zeros((*label.shape, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(label).save(root / "masks" / f"{i}.png")
    return build_dataset("folder", root)


def test_constant_prediction_metrics(tmp_path):
    dataset = folder(tmp_path, [[[0, 0, 1, 255]] * 3, [[2, 0, 0, 0]] * 2])
    segmenter = ConstantSegmenter(0, 3)
    r = evaluate(segmenter, dataset, EvalSettings(min_size=8, sliding=True, topk=5,
                                                 progress=False))
    # pixels: class 0: 6 + 6 = 12, class 1: 3, class 2: 2 -> IoU0 = 12 / 17, IoU1 = IoU2 = 0
    assert r["per_class_iou"]["a"] == pytest.approx(100 * 12 / 17)
    assert r["mIoU"] == pytest.approx(100 * 12 / 17 / 3)
    assert r["pACC"] == pytest.approx(100 * 12 / 17)
    assert r["num_images"] == 2 and r["confusion_matrix"].sum() == 17
    from fgaseg.eval import write_json
    saved = json.loads(write_json(r, tmp_path / "r.json").read_text())
    assert saved["confusion_matrix"][0][0] == 12 and saved["per_class_iou"]["b"] == 0.0
    # shortest side resized to 8 before the segmenter; sliding/topk passed through
    assert segmenter.calls[0] == ((1, 3, 8, 11), True, 5)


def test_voc20b_predictions_beyond_20_are_background(tmp_path):
    root = tmp_path
    base = root / "VOCdevkit/VOC2012"
    (base / "JPEGImages").mkdir(parents=True)
    (base / "annotations_detectron2_bg/val").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(base / "JPEGImages/x.jpg")
    Image.fromarray(np.array([[20, 20], [3, 255]], np.uint8)).save(
        base / "annotations_detectron2_bg/val/x.png")
    dataset = build_dataset("voc20b", root)
    segmenter = ConstantSegmenter(40, 59)   # a PC-59 name that is not a VOC class
    r = evaluate(segmenter, dataset, EvalSettings(min_size=None, progress=False))
    assert r["num_classes"] == 21
    assert r["per_class_iou"]["background"] == pytest.approx(100 * 2 / 3)
    assert r["per_class_iou"]["boat"] == 0.0 and r["per_class_iou"]["cat"] is None


def test_argmax_resized_matches_direct():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(300, 7, 9, generator=g)
    direct = F.interpolate(scores[None], size=(20, 25), mode="bilinear",
                           align_corners=False)[0].argmax(0)
    assert torch.equal(argmax_resized(scores, (20, 25), chunk=64), direct)
    assert torch.equal(argmax_resized(scores[:5], (7, 9)), scores[:5].argmax(0))


@pytest.mark.timeout(120)
def test_eval_cli_training_free_method(tmp_path, capsys):
    from fgaseg.cli import main
    from fgaseg.clip import build_clip
    from fgaseg.clip.loading import save_clip

    dataset_root = tmp_path / "data"
    folder(tmp_path, [[[0, 1, 2, 255]] * 4])
    weights = save_clip(build_clip("tiny", seed=0), tmp_path / "clip.pt")
    out = tmp_path / "r.json"
    assert main(["eval", "--dataset", "folder", "--root", str(dataset_root), "--method",
                 "clearclip", "--weights", str(weights), "--min-size", "32", "--out", str(out),
                 "--no-progress", "--save-confusion", str(tmp_path / "cm.npy")]) == 0
    results = json.loads(out.read_text())
    assert results["method"] == "clearclip" and results["num_images"] == 1
    assert set(results["per_class_iou"]) == {"a", "b", "c"}
    assert np.load(tmp_path / "cm.npy").sum() == 12
    assert "mIoU" in capsys.readouterr().out
    assert main(["eval", "--dataset", "folder", "--root", str(dataset_root), "--method", "nope",
                 "--weights", str(weights)]) == 2
