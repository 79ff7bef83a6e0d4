"""``fgaseg eval --protocol official``: scores straight at the label size, protocol printed."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.data import build_dataset
from fgaseg.errors import ConfigError
from fgaseg.eval import EvalSettings, evaluate

model_module = pytest.importorskip("fgaseg.model")


def _folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("a\nb\nc")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((12, 20, 3)) * 255).astype(np.uint8)).save(root / "images" / "0.png")
    Image.fromarray(rng.integers(0, 3, (12, 20)).astype(np.uint8)).save(root / "masks" / "0.png")
    return root


class Recorder:
    """Records the keywords of every ``segment_logits`` call."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def eval(self):
        return self

    def segment_logits(self, images, class_names, *, sliding=False, topk=None, protocol="default",
                       output_size=None):
        self.calls.append((tuple(images.shape), protocol, output_size))
        size = output_size or images.shape[-2:]
        return torch.zeros(images.shape[0], len(class_names), *size)


def test_official_protocol_asks_for_scores_at_the_label_size(tmp_path):
    dataset = build_dataset("folder", _folder(tmp_path))
    recorder = Recorder()
    results = evaluate(recorder, dataset, EvalSettings(min_size=24, protocol="official", progress=False))
    assert recorder.calls == [((1, 3, 24, 40), "official", (12, 20))]
    assert results["protocol"] == "official"
    evaluate(recorder, dataset, EvalSettings(min_size=24, progress=False))
    assert recorder.calls[-1] == ((1, 3, 24, 40), "default", None)


def test_official_protocol_needs_a_model_with_protocols(tmp_path):
    from test_eval_evaluator import ConstantSegmenter

    dataset = build_dataset("folder", _folder(tmp_path))
    with pytest.raises(ConfigError, match="only available for FGASeg models"):
        evaluate(ConstantSegmenter(0, 3), dataset, EvalSettings(protocol="official", progress=False))


@pytest.mark.timeout(120)
def test_eval_cli_prints_the_protocol(tmp_path, capsys):
    from fgaseg.cli import main

    root = _folder(tmp_path)
    torch.manual_seed(0)
    weights = model_module.FGASeg(model_module.fgaseg_tiny()).save_pretrained(tmp_path / "w")
    out = tmp_path / "r.json"
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--weights", str(weights),
                 "--min-size", "32", "--sliding", "--protocol", "official", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "protocol: official (sliding window" in printed
    assert json.loads(out.read_text())["protocol"] == "official"


def test_official_input_resize_is_pil_bilinear_on_8_bit_pixels():
    from PIL import Image

    from fgaseg.model.official_protocol import detectron2_resize

    rng = np.random.default_rng(3)
    pixels = (rng.random((30, 41, 3)) * 255).astype(np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    expected = np.asarray(Image.fromarray(pixels).resize((55, 40), Image.BILINEAR))
    out = detectron2_resize(image, (40, 55))
    assert out.shape == (3, 40, 55)
    assert np.array_equal((out * 255).round().byte().permute(1, 2, 0).numpy(), expected)
