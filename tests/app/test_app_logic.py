"""The web demo's logic without a browser: segmentation, legend table, missing gradio."""

import sys

import numpy as np
import pytest
from PIL import Image

from fgaseg.app.ui import legend_html, segment_for_app
from fgaseg.cli import main
from fgaseg.errors import ClassNamesError, ConfigError, FGASegError, ImageError
from fgaseg.predict.reference import ColourSegmenter


def test_segment_for_app_from_an_uploaded_file(tmp_path):
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:, 15:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "up.png")
    overlay, table, result = segment_for_app(ColourSegmenter(), str(tmp_path / "up.png"),
                                             "black, blue", opacity=0.3)
    assert overlay.size[0] > 30 and result.pixel_share == {"black": 0.5, "blue": 0.5}
    assert table.count('class="fgaseg-legend-row"') == 2 and "50.0%" in table


def test_legend_escapes_html_in_class_names():
    result = segment_for_app(ColourSegmenter(), np.zeros((4, 4, 3), np.uint8),
                             "<script>alert(1)</script>, black")[2]
    table = legend_html(result)
    assert "<script>" not in table and "&lt;script&gt;" in table


@pytest.mark.parametrize("image, classes, error", [
    (None, "cat", FGASegError), (np.zeros((4, 4, 3), np.uint8), " , ", ClassNamesError),
    ("/no/such/file.png", "cat", ImageError)])
def test_bad_inputs_raise_documented_errors(image, classes, error):
    with pytest.raises(error):
        segment_for_app(ColourSegmenter(), image, classes)


def test_build_app_without_gradio_names_the_extra(monkeypatch):
    from fgaseg.app.ui import build_app

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fgaseg\[demo\]'"):
        build_app(ColourSegmenter())


def test_app_command_without_gradio(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["app", "--weights", str(tmp_path / "w")]) == 2
    assert "fgaseg[demo]" in capsys.readouterr().err


def test_app_command_errors_are_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    assert main(["app", "--weights", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and err.count("\n") == 1
    assert main(["app", "--weights", "x", "--port", "0"]) == 2


def test_segment_for_app_with_tiny_fgaseg(tmp_path):
    model_module = pytest.importorskip("fgaseg.model")
    import torch

    torch.manual_seed(0)
    weights = model_module.FGASeg(model_module.fgaseg_tiny()).save_pretrained(tmp_path / "w")
    from fgaseg.predict.loading import load_segmenter

    segmenter = load_segmenter(str(weights), "fgaseg", "cpu")
    pixels = (np.random.default_rng(0).random((36, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "up.png")
    overlay, table, result = segment_for_app(segmenter, str(tmp_path / "up.png"), "cat, sky")
    assert result.labels.shape == (36, 50) and overlay.size[0] > 50
    picture = np.asarray(overlay)[:36, :50]
    assert np.abs(picture.astype(int) - pixels).max() > 20  # colours blended in
    assert table.count('class="fgaseg-legend-row"') == 2
