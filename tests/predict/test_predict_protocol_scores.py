"""Compact scores (#16) with the official protocol (#15): ``segment_scores(protocol=...)``,
``predict(protocol="official")`` through the compact path, ``ClassScores.from_dense_shared``."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fgaseg.predict.api import predict
from fgaseg.predict.scores import ClassScores

model_module = pytest.importorskip("fgaseg.model")

NAMES = [f"class {i}" for i in range(12)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return model_module.FGASeg(model_module.fgaseg_tiny(topk=2)).eval()


@pytest.mark.parametrize("sliding", [False, True])
@pytest.mark.parametrize("protocol", ["default", "official"])
def test_segment_scores_equal_segment_logits_in_both_protocols(model, protocol, sliding):
    images = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(3))
    dense = model.segment_logits(images, NAMES, sliding=sliding, protocol=protocol)
    compact = model.segment_scores(images, NAMES, sliding=sliding, protocol=protocol)
    assert len(compact) == 2
    for b, scores in enumerate(compact):
        assert scores.num_classes == len(NAMES) and scores.size == (40, 52)
        assert torch.equal(scores.to_dense(), dense[b])
        assert torch.equal(scores.argmax(), dense[b].argmax(0))


def test_official_scores_store_pruned_classes_once(model):
    # TopK 2 of 12 classes in one view: the pruned classes' official maps (sigmoid(0) resized)
    # are bit-identical, so they share one stored map
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    scores = model.segment_scores(images, NAMES, protocol="official")[0]
    assert scores.shared is not None and scores.values.shape[0] < len(NAMES)
    assert torch.equal(scores.to_dense(), model.segment_logits(images, NAMES, protocol="official")[0])


def test_predict_official_uses_probabilities_for_labels_and_keeps_scores(model):
    rng = np.random.default_rng(7)
    image = rng.random((40, 60, 3)).astype(np.float32)
    result = predict(model, image, NAMES, protocol="official", max_side=30)
    pixels = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=(20, 30),
                           mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    expected = model.segment_logits(pixels, NAMES, protocol="official")[0]
    assert np.array_equal(result.scores, expected.numpy())
    probs = expected.sigmoid()[None]
    labels = F.interpolate(probs, size=(40, 60), mode="bilinear", align_corners=False)[0].argmax(0)
    assert np.array_equal(result.labels, labels.numpy())
    maps = result.score_maps(["class 3", 0], size="inference")
    assert np.array_equal(maps, expected[[3, 0]].numpy())


def test_predict_official_large_image_cellwise_argmax_matches_dense(model, monkeypatch):
    # force the large-image argmax (budget below T * H * W) in the official protocol
    import fgaseg.predict.api as api

    monkeypatch.setattr(api, "_UPSAMPLE_BUDGET", 1000)
    rng = np.random.default_rng(8)
    image = rng.random((90, 120, 3)).astype(np.float32)
    result = predict(model, image, NAMES, protocol="official", max_side=40)
    # reference: the former dense large-image computation, every class through grid_sample
    probs = torch.from_numpy(result.scores).sigmoid()[None]
    ys = (torch.arange(90, dtype=torch.float32) + 0.5) / 90 * 2 - 1
    xs = (torch.arange(120, dtype=torch.float32) + 0.5) / 120 * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
    dense = F.grid_sample(probs, grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[0].argmax(0)
    assert np.array_equal(result.labels, dense.numpy())


class ScoresWithoutProtocol:
    """A segmenter whose segment_scores predates protocols: the official protocol must bypass it."""

    device = torch.device("cpu")

    def segment_logits(self, images, class_names, *, sliding=False, topk=None, protocol="default"):
        value = 1.0 if protocol == "official" else 0.0
        out = torch.zeros(images.shape[0], len(class_names), *images.shape[-2:])
        out[:, 1] = value
        return out

    def segment_scores(self, images, class_names, *, sliding=False, topk=None):
        raise AssertionError("segment_scores has no protocol keyword")


def test_segment_scores_without_protocol_is_bypassed_for_official():
    image = np.zeros((8, 8, 3), np.float32)
    result = predict(ScoresWithoutProtocol(), image, ["a", "b"], protocol="official")
    assert (result.labels == 1).all()
    with pytest.raises(AssertionError):
        predict(ScoresWithoutProtocol(), image, ["a", "b"])


def test_from_dense_shared_groups_identical_maps():
    g = torch.Generator().manual_seed(0)
    dense = torch.rand(7, 5, 6, generator=g)
    same = torch.rand(5, 6, generator=g)
    for c in (1, 4, 6):
        dense[c] = same
    scores = ClassScores.from_dense_shared(dense)
    assert scores.classes.tolist() == [0, 1, 2, 3, 5] and scores.shared == 1
    assert torch.equal(scores.to_dense(), dense)
    assert torch.equal(scores.argmax(), dense.argmax(0))
    distinct = ClassScores.from_dense_shared(torch.rand(3, 4, 4, generator=g))
    assert distinct.shared is None and distinct.values.shape[0] == 3
    constant = ClassScores.from_dense_shared(torch.zeros(4, 2, 2))
    assert constant.classes.tolist() == [0] and torch.equal(constant.to_dense(), torch.zeros(4, 2, 2))
