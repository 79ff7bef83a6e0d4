"""Class colours: the same class index always gets the same colour, neighbours look different."""

from __future__ import annotations

import colorsys

import numpy as np

# high-contrast colours for the first classes (Kelly's list, minus white/black/grays)
_BASE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]

#: colour of the ignore label (255) in indexed PNGs
IGNORE_COLOR = (0, 0, 0)


def make_palette(num_classes: int) -> np.ndarray:
    """uint8 ``(num_classes, 3)`` RGB colours; beyond the base list, golden-ratio hues."""
    colors = list(_BASE[:num_classes])
    golden = 0.618033988749895
    for index in range(len(colors), num_classes):
        hue = (index * golden) % 1.0
        saturation = 0.55 + 0.45 * ((index * 7) % 3) / 2
        value = 0.65 + 0.35 * ((index * 5) % 4) / 3
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return np.asarray(colors, dtype=np.uint8).reshape(num_classes, 3)


def png_palette(num_classes: int) -> list[int]:
    """Flat 768-entry palette for an indexed ("P") PNG; index 255 is the ignore colour."""
    table = np.zeros((256, 3), dtype=np.uint8)
    count = min(num_classes, 255)
    table[:count] = make_palette(count)
    table[255] = IGNORE_COLOR
    return table.reshape(-1).tolist()
