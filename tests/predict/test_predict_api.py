"""predict() against the weightless ColourSegmenter: inputs, sizes, caching, results."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgaseg.errors import ClassNamesError, ConfigError, ImageError
from fgaseg.predict import SegmentationResult, predict
from fgaseg.predict.api import upsampled_argmax
from fgaseg.predict.reference import ColourSegmenter


def _halves(height=24, width=32, left=(255, 0, 0), right=(0, 0, 255)):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = left
    image[:, width // 2:] = right
    return image


class RecordingSegmenter(ColourSegmenter):
    """Remembers the arguments of every segment_logits call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def segment_logits(self, images, class_names, *, sliding=False, topk=None):
        self.calls.append((tuple(images.shape), list(class_names), sliding, topk))
        return super().segment_logits(images, class_names, sliding=sliding, topk=topk)


def test_single_image_result():
    result = predict(ColourSegmenter(), _halves(), "red, blue, green")
    assert isinstance(result, SegmentationResult)
    assert result.labels.shape == (24, 32) and result.labels.dtype == np.int64
    assert result.scores.shape == (3, 24, 32) and result.scores.dtype == np.float32
    assert result.class_names == ["red", "blue", "green"]
    assert (result.labels[:, :16] == 0).all() and (result.labels[:, 16:] == 1).all()
    assert result.pixel_share == pytest.approx({"red": 0.5, "blue": 0.5, "green": 0.0})
    assert sum(result.pixel_share.values()) == pytest.approx(1.0)
    assert set(result.timings) == {"load", "inference", "postprocess"}


def test_list_and_batch_inputs(tmp_path):
    Image.fromarray(_halves()).save(tmp_path / "a.png")
    tensor = torch.from_numpy(_halves(8, 8)).permute(2, 0, 1).float() / 255
    results = predict(ColourSegmenter(), [tmp_path / "a.png", Image.fromarray(_halves(10, 12)),
                                          tensor], ["red", "blue"])
    assert [r.size for r in results] == [(32, 24), (12, 10), (8, 8)]
    assert results[0].source == str(tmp_path / "a.png")
    batch = predict(ColourSegmenter(), torch.stack([tensor, tensor]), ["red", "blue"])
    assert len(batch) == 2 and all(r.labels.shape == (8, 8) for r in batch)


def test_options_reach_the_segmenter_and_class_list_is_stable():
    segmenter = RecordingSegmenter()
    predict(segmenter, [_halves(), _halves(10, 10)], "red, blue", sliding=True, topk=2)
    predict(segmenter, _halves(), ["red", "blue"])
    names = [call[1] for call in segmenter.calls]
    assert names == [["red", "blue"]] * 3
    assert [call[2:] for call in segmenter.calls] == [(True, 2), (True, 2), (False, None)]
    assert segmenter.calls[0][0] == (1, 3, 24, 32)
    # the class encoding (text embeddings for a real model) was computed once for all calls
    assert segmenter.encode_calls == 1


def test_segmenter_receives_unit_range_float_images_on_its_device():
    segmenter = RecordingSegmenter()
    seen = {}
    original = segmenter.segment_logits

    def spy(images, class_names, **kw):
        seen["dtype"], seen["device"] = images.dtype, images.device
        seen["range"] = (float(images.min()), float(images.max()))
        return original(images, class_names, **kw)

    segmenter.segment_logits = spy
    predict(segmenter, _halves(left=(255, 255, 255), right=(0, 0, 0)), "white, black")
    assert seen == {"dtype": torch.float32, "device": segmenter.device, "range": (0.0, 1.0)}


def test_large_image_is_downscaled_for_inference_but_labels_keep_full_size():
    segmenter = RecordingSegmenter()
    image = _halves(300, 900)
    result = predict(segmenter, image, "red, blue", max_side=90)
    assert segmenter.calls[0][0] == (1, 3, 30, 90)
    assert result.scores.shape == (2, 30, 90) and result.inference_size == (90, 30)
    assert result.labels.shape == (300, 900) and result.size == (900, 300)
    assert (result.labels[:, :440] == 0).all() and (result.labels[:, 460:] == 1).all()
    full = predict(segmenter, image, "red, blue", max_side=0)
    assert full.scores.shape == (2, 300, 900)


def test_banded_upsampling_matches_interpolate(monkeypatch):
    import fgaseg.predict.api as api

    scores = torch.randn(5, 13, 17)
    expected = F.interpolate(scores[None], size=(61, 47), mode="bilinear",
                             align_corners=False)[0].argmax(0)
    monkeypatch.setattr(api, "_UPSAMPLE_BUDGET", 5 * 47 * 3)  # forces bands of 3 rows
    got = upsampled_argmax(scores, (61, 47))
    assert (got == expected).float().mean() > 0.999  # ties may differ by rounding


def test_more_than_1000_classes():
    names = [f"class {i}" for i in range(1200)] + ["red"]
    result = predict(ColourSegmenter(), _halves(6, 6, right=(255, 0, 0)), names)
    assert result.scores.shape == (1201, 6, 6)
    assert (result.labels == 1200).all()
    assert result.pixel_share["red"] == 1.0


def test_bad_class_lists_raise_before_any_work():
    segmenter = RecordingSegmenter()
    for bad in ("", "cat,,dog", "cat, cat", []):
        with pytest.raises(ClassNamesError):
            predict(segmenter, _halves(), bad)
    assert segmenter.calls == []


def test_bad_options():
    with pytest.raises(ConfigError, match="topk"):
        predict(ColourSegmenter(), _halves(), "red", topk=-1)
    with pytest.raises(ConfigError, match="max_side"):
        predict(ColourSegmenter(), _halves(), "red", max_side=-5)


def test_bad_image_in_a_list_names_its_position(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ImageError, match=r"image #2 of 2: .*bad.png"):
        predict(ColourSegmenter(), [_halves(), tmp_path / "bad.png"], "red")
    with pytest.raises(ImageError, match="empty"):
        predict(ColourSegmenter(), [], "red")


def test_wrong_output_shape_from_segmenter_is_reported():
    class Broken(ColourSegmenter):
        def segment_logits(self, images, class_names, **kw):
            return torch.zeros(1, len(class_names) + 1, 4, 4)

    with pytest.raises(RuntimeError, match="shape"):
        predict(Broken(), _halves(), "red")


def test_result_saves_labels_overlay_and_json(tmp_path):
    result = predict(ColourSegmenter(), _halves(), "red, blue, green")
    paths = result.save(tmp_path / "out", "pic", extra={"method": "colour"})
    labels = Image.open(paths["labels"])
    assert labels.mode == "P"
    np.testing.assert_array_equal(np.asarray(labels), result.labels)
    palette = np.asarray(labels.getpalette()[:9]).reshape(3, 3)
    assert len({tuple(c) for c in palette}) == 3  # distinct class colours
    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert summary["classes"] == ["red", "blue", "green"]
    assert summary["size"] == [32, 24] and summary["present"] == ["red", "blue"]
    assert summary["pixel_share"]["green"] == 0 and summary["method"] == "colour"
    assert Image.open(paths["overlay"]).size[1] >= 24


def test_label_png_for_more_than_255_classes_is_16_bit(tmp_path):
    names = [f"c{i}" for i in range(299)] + ["red"]
    result = predict(ColourSegmenter(), _halves(4, 4, right=(255, 0, 0)), names)
    paths = result.save(tmp_path, "many")
    assert np.asarray(Image.open(paths["labels"])).max() == 299


def test_keep_image_false():
    result = predict(ColourSegmenter(), _halves(), "red", keep_image=False)
    assert result.image is None
    with pytest.raises(ValueError, match="no image"):
        result.overlay()
    assert result.overlay(_halves(), legend=False).size == (32, 24)
