"""``predict(..., protocol=...)`` and ``fgaseg segment --protocol``: routing and errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.cli import main
from fgaseg.errors import ConfigError
from fgaseg.predict.api import predict

model_module = pytest.importorskip("fgaseg.model")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return model_module.FGASeg(model_module.fgaseg_tiny(topk=2)).eval()


class PlainSegmenter:
    """A segmenter without protocols (like the training-free ones)."""

    device = torch.device("cpu")

    def segment_logits(self, images, class_names, *, sliding=False, topk=None):
        return torch.zeros(images.shape[0], len(class_names), *images.shape[-2:])


def test_official_scores_are_the_models_official_scores(model):
    rng = np.random.default_rng(0)
    image = rng.random((30, 44, 3)).astype(np.float32)
    names = ["cat", "grass", "sky"]
    result = predict(model, image, names, protocol="official", sliding=True)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    expected = model.segment_logits(pixels, names, sliding=True, protocol="official")[0]
    assert np.allclose(result.scores, expected.numpy(), atol=1e-6)
    default = predict(model, image, names, sliding=True)
    # the fast decoder's second sigmoid puts official probabilities in [0.5, 0.74]
    official_probs = torch.from_numpy(result.scores).sigmoid()
    assert official_probs.min() >= 0.5 - 1e-6 and official_probs.max() <= 0.74
    assert not np.allclose(result.scores, default.scores, atol=1e-3)


def test_downscaled_image_labels_come_from_resized_probabilities(model):
    rng = np.random.default_rng(1)
    image = rng.random((40, 60, 3)).astype(np.float32)
    result = predict(model, image, ["cat", "grass", "sky"], protocol="official", max_side=30)
    assert result.scores.shape == (3, 20, 30) and result.labels.shape == (40, 60)
    probs = torch.from_numpy(result.scores).sigmoid()[None]
    expected = torch.nn.functional.interpolate(probs, size=(40, 60), mode="bilinear",
                                               align_corners=False)[0].argmax(0)
    assert np.array_equal(result.labels, expected.numpy())


def test_protocol_errors_are_one_line():
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ConfigError, match="only available for FGASeg models"):
        predict(PlainSegmenter(), image, ["a", "b"], protocol="official")
    with pytest.raises(ConfigError, match="protocol must be one of"):
        predict(PlainSegmenter(), image, ["a", "b"], protocol="paper")
    assert predict(PlainSegmenter(), image, ["a", "b"]).labels.shape == (8, 8)


def test_segment_command_official_protocol(model, tmp_path, capsys):
    weights = model.save_pretrained(tmp_path / "w")
    Image.fromarray((np.random.default_rng(2).random((30, 44, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    code = main(["segment", str(tmp_path / "a.png"), "--classes", "cat, sky", "--weights", str(weights),
                 "--out", str(tmp_path / "out"), "--device", "cpu", "--protocol", "official"])
    assert code == 0, capsys.readouterr().err
    assert np.asarray(Image.open(tmp_path / "out" / "a_labels.png")).shape == (30, 44)
