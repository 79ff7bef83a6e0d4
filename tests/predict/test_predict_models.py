"""predict() end to end with the real segmenters: tiny FGASeg (random weights) and the
training-free CLIP segmenter on the tiny CLIP."""

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.errors import ClassNamesError, WeightsError
from fgaseg.predict import SegmentationResult

model_module = pytest.importorskip("fgaseg.model")


@pytest.fixture(scope="module")
def fgaseg_model():
    torch.manual_seed(0)
    return model_module.FGASeg(model_module.fgaseg_tiny()).eval()


@pytest.fixture(scope="module")
def weights_dir(fgaseg_model, tmp_path_factory):
    return fgaseg_model.save_pretrained(tmp_path_factory.mktemp("weights") / "tiny")


def _image(height=40, width=56, seed=0):
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


def test_fgaseg_predict_from_saved_weights(weights_dir, tmp_path):
    model = model_module.FGASeg.from_pretrained(weights_dir).eval()
    Image.fromarray(_image()).save(tmp_path / "x.jpg")
    result = model.predict(tmp_path / "x.jpg", classes=["cat", "grass", "sky"])
    assert isinstance(result, SegmentationResult)
    assert result.labels.shape == (40, 56) and result.scores.shape == (3, 40, 56)
    assert result.labels.min() >= 0 and result.labels.max() < 3
    np.testing.assert_array_equal(result.labels, result.scores.argmax(0))
    assert sum(result.pixel_share.values()) == pytest.approx(1.0)
    assert result.overlay().size[0] > 56


def test_fgaseg_matches_segment_logits(fgaseg_model):
    image = _image(32, 48, seed=1)
    result = fgaseg_model.predict(image, "cat, sky", topk=0)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    expected = fgaseg_model.segment_logits(pixels, ["cat", "sky"], topk=0)
    np.testing.assert_allclose(result.scores, expected[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("budget", [None, 0])  # one F.interpolate call / per-cell grid_sample
def test_fgaseg_labels_of_a_downscaled_image_equal_the_dense_path(fgaseg_model, budget,
                                                                   monkeypatch):
    # issue #16.1: only the surviving classes are resized, the label map is unchanged
    import fgaseg.predict.api as api

    image = _image(90, 150, seed=4)
    classes = [f"thing {i}" for i in range(40)]  # > pad_len: pre-selection, then TopK
    if budget is not None:
        monkeypatch.setattr(api, "_UPSAMPLE_BUDGET", budget)
    result = fgaseg_model.predict(image, classes, max_side=48, topk=2)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    small = torch.nn.functional.interpolate(pixels, size=(29, 48), mode="bilinear",
                                            align_corners=False, antialias=True).clamp(0, 1)
    dense = fgaseg_model.segment_logits(small, classes, topk=2)[0]
    if budget is None:
        expected = torch.nn.functional.interpolate(dense[None], size=(90, 150), mode="bilinear",
                                                   align_corners=False)[0].argmax(0)
    else:
        from test_scores import dense_banded_argmax

        expected = dense_banded_argmax(dense, (90, 150), rows=7)
    np.testing.assert_array_equal(result.labels, expected.numpy())
    assert result.class_scores.values.shape[0] < 40
    np.testing.assert_array_equal(result.scores, dense.numpy())
    maps = result.score_maps(["thing 3", 0])
    assert maps.shape == (2, 90, 150)
    assert result.score_maps(["thing 3"], size="inference").shape == (1, 29, 48)
    with pytest.raises(KeyError):
        result.score_maps(["no such class"])


def test_text_embeddings_are_encoded_once_per_class_list(fgaseg_model, monkeypatch):
    calls = []
    original = fgaseg_model.clip.encode_text

    def counting(tokens):
        calls.append(tokens.shape[0])
        return original(tokens)

    monkeypatch.setattr(fgaseg_model.clip, "encode_text", counting)
    classes = ["zebra", "savanna", "acacia tree"]
    fgaseg_model.predict([_image(seed=2), _image(24, 24, seed=3)], classes)
    first = len(calls)
    assert first >= 1
    fgaseg_model.predict(_image(seed=4), classes)
    fgaseg_model.predict(_image(seed=5), "zebra, savanna, acacia tree")  # same list as a string
    assert len(calls) == first  # served from the cache
    fgaseg_model.predict(_image(seed=5), ["zebra", "savanna"])
    assert len(calls) > first  # a different list is encoded


def test_more_than_1000_classes_non_ascii_and_long_names(fgaseg_model):
    names = [f"thing number {i}" for i in range(1001)] + ["猫", "Straßenbahn"]
    long_name = " ".join(["very long class name"] * 40)
    with pytest.warns(UserWarning, match="truncated"):
        result = fgaseg_model.predict(_image(16, 16, seed=6), names + [long_name], topk=0)
    assert result.scores.shape == (1004, 16, 16)
    assert np.isfinite(result.scores).all()


def test_bad_classes_with_real_model(fgaseg_model):
    for bad in ("", "cat,,dog", ["cat", "CAT"]):
        with pytest.raises(ClassNamesError):
            fgaseg_model.predict(_image(), bad)


def test_training_free_predict_with_background_channel():
    from fgaseg.clip import build_clip
    from fgaseg.training_free import TrainingFreeSegmenter

    segmenter = TrainingFreeSegmenter(build_clip("tiny", seed=0), templates=["a photo of a {}."],
                                      background_threshold=0.99)
    result = segmenter.predict(_image(30, 40, seed=7), ["cat", "sky"])
    assert result.class_names == segmenter.output_class_names(["cat", "sky"])
    assert len(result.class_names) == 3 and result.scores.shape[0] == 3
    assert result.labels.shape == (30, 40)


def test_load_segmenter_errors(weights_dir, tmp_path):
    from fgaseg.predict.loading import load_segmenter

    model = load_segmenter(str(weights_dir), "fgaseg", "cpu")
    assert not model.training and model.device.type == "cpu"
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text('{"not": "a config"}')
    (tmp_path / "junk" / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "file.bin").write_bytes(b"\x00" * 100)
    for weights, method in [(tmp_path / "none", "fgaseg"), (tmp_path / "empty", "fgaseg"),
                            (tmp_path / "junk", "fgaseg"), (tmp_path / "file.bin", "fgaseg"),
                            (weights_dir, "training-free"),
                            (tmp_path / "file.bin", "training-free")]:
        with pytest.raises(WeightsError) as info:
            load_segmenter(str(weights), method, "cpu")
        assert "\n" not in str(info.value), str(info.value)
