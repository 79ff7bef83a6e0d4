"""Pillow-only line charts of the demo and the ablations."""

import numpy as np
from PIL import Image

from fgaseg.synth.plot import curve, line_chart, smooth


def test_smooth_is_a_running_mean_shorter_at_the_start():
    assert np.allclose(smooth([1, 3, 5, 7], 2), [1, 2, 4, 6])


def test_two_panels_one_log_scaled(tmp_path):
    loss = curve([1.0 / (1 + i) for i in range(100)])
    path = line_chart([("loss", {"− LCS": loss}), ("tail", {"a": loss[60:]})], tmp_path / "c.png",
                      size=(300, 200), log_y=(True, False))
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (200, 600, 3)
    # the series is drawn in its colour in both panels
    blue = (image == (31, 119, 180)).all(-1)
    assert blue[:, :300].any() and blue[:, 300:].any()


def test_log_panel_skips_non_positive_values(tmp_path):
    path = line_chart([("loss", {"x": [(1, 0.0), (2, -1.0)]})], tmp_path / "c.png", log_y=(True,))
    assert Image.open(path).size == (520, 320)  # drawn as "no data", not an error
