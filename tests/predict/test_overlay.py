"""Overlays, legends and palettes."""

import numpy as np
import pytest

from fgaseg.predict.overlay import blend, render_overlay
from fgaseg.predict.palette import make_palette, png_palette


def test_palette_is_deterministic_and_distinct():
    colors = make_palette(300)
    assert colors.shape == (300, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors, make_palette(300))
    assert len({tuple(c) for c in colors[:40]}) == 40
    table = png_palette(3)
    assert len(table) == 768 and table[255 * 3: 256 * 3] == [0, 0, 0]


def test_blend_math_and_ignore_label():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 255]])
    colors = np.array([[200, 0, 0], [0, 0, 0]], dtype=np.uint8)
    out = blend(image, labels, colors, 0.25)
    np.testing.assert_array_equal(out[0, 0], [125, 75, 75])
    np.testing.assert_array_equal(out[0, 1], [75, 75, 75])
    np.testing.assert_array_equal(out[0, 2], [100, 100, 100])  # ignore: untouched
    np.testing.assert_array_equal(blend(image, labels, colors, 0.0), image)
    with pytest.raises(ValueError):
        blend(image, labels, colors, 1.5)


def _overlay(height, width, names, labels=None, **kw):
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    if labels is None:
        labels = np.zeros((height, width), dtype=np.int64)
        labels[:, width // 2:] = 1
    counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    share = {n: float(counts[i]) for i, n in enumerate(names)}
    return image, render_overlay(image, labels, names, share, **kw)


def test_overlay_keeps_image_in_corner_and_adds_legend_panel():
    image, out = _overlay(200, 300, ["cat", "grass", "sky"])
    assert out.size[1] == 200 and out.size[0] > 300
    pixels = np.asarray(out)
    assert not np.array_equal(pixels[:, :300], image)  # colours were blended in
    legend = pixels[:, 300:]
    assert (legend != 255).any()                        # something drawn on the panel
    swatch_colours = {tuple(c) for c in make_palette(3)[:2]}
    found = {tuple(p) for p in legend.reshape(-1, 3)}
    assert swatch_colours <= found                      # swatches of present classes
    assert tuple(make_palette(3)[2]) not in found       # absent class not listed


def test_overlay_without_legend_has_image_size():
    _, out = _overlay(20, 30, ["a", "b"], legend=False)
    assert out.size == (30, 20)


def test_tiny_image_gets_readable_legend_and_non_ascii_names_render():
    _, out = _overlay(8, 8, ["猫", "Straßenbahn"])
    assert out.size[0] > 8 and out.size[1] > 8


def test_many_present_classes_are_summarised():
    labels = np.arange(400).reshape(20, 20) % 300
    _, out = _overlay(20, 20, [f"c{i}" for i in range(300)], labels=labels)
    assert out.size[1] < 1000  # legend truncated with "+ N more", not 300 rows tall
