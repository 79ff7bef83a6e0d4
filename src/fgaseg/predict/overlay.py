"""Overlay a label map on its image and draw a legend panel to the right of it."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fgaseg.predict.palette import make_palette

LEGEND_BACKGROUND = (255, 255, 255)
LEGEND_TEXT = (20, 20, 20)
MIN_LEGEND_ROWS = 10  # small images get a taller canvas so the legend stays readable


def blend(image: np.ndarray, labels: np.ndarray, colors: np.ndarray, opacity: float) -> np.ndarray:
    """uint8 ``(H, W, 3)`` image mixed with the class colours of `labels` ``(H, W)``.

    Labels outside ``[0, len(colors))`` (e.g. 255 = ignore) keep the image's own pixels.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    valid = (labels >= 0) & (labels < len(colors))
    color_map = colors[np.where(valid, labels, 0)].astype(np.float32)
    mixed = image.astype(np.float32) * (1.0 - opacity) + color_map * opacity
    out = np.where(valid[..., None], mixed, image.astype(np.float32))
    return (out + 0.5).astype(np.uint8)


def render_overlay(image: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   pixel_share: dict[str, float], *, opacity: float = 0.5,
                   legend: bool = True) -> Image.Image:
    """Blend and (optionally) append a legend panel listing present classes by share.

    Args:
        image: uint8 ``(H, W, 3)``.
        labels: int ``(H, W)`` indices into `class_names`.
    Returns:
        RGB image; without legend exactly ``(W, H)``, with legend ``W + panel`` wide and at
        least ``H`` tall (the original pixels are in the top-left ``W x H`` corner).
    """
    colors = make_palette(len(class_names))
    mixed = Image.fromarray(blend(image, labels, colors, opacity))
    if not legend:
        return mixed
    entries = [(name, tuple(int(c) for c in colors[index]), pixel_share.get(name, 0.0))
               for index, name in enumerate(class_names)]
    entries = sorted((e for e in entries if e[2] > 0), key=lambda e: -e[2])
    return _attach_legend(mixed, entries)


def _attach_legend(image: Image.Image, entries: list[tuple[str, tuple, float]]) -> Image.Image:
    width, height = image.size
    font_size = int(np.clip(height / 28, 12, 40))
    font = _font(font_size)
    row = int(font_size * 1.6)
    pad = max(4, font_size // 2)
    fits = max(1, (height - 2 * pad) // row)
    rows = min(len(entries), max(fits, MIN_LEGEND_ROWS))
    shown, hidden = entries[:rows], len(entries) - rows
    if hidden > 0:  # last row says how many are left out
        shown, hidden = entries[:rows - 1], len(entries) - rows + 1
    labels = [f"{name}  {share * 100:.1f}%" for name, _, share in shown]
    if hidden > 0:
        labels.append(f"+ {hidden} more")
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((_text_width(probe, text, font) for text in labels), default=0)
    panel_width = pad * 3 + font_size + max(text_width, font_size * 4)
    canvas_height = max(height, 2 * pad + max(1, len(labels)) * row)
    canvas = Image.new("RGB", (width + panel_width, canvas_height), LEGEND_BACKGROUND)
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    left = width + pad
    for index, text in enumerate(labels):
        top = pad + index * row
        if index < len(shown):
            draw.rectangle([left, top, left + font_size, top + font_size],
                           fill=shown[index][1], outline=LEGEND_TEXT)
        _draw_text(draw, (left + font_size + pad, top), text, font)
    return canvas


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans when installed (wide Unicode coverage), else PIL's bundled font."""
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> int:
    try:
        box = draw.textbbox((0, 0), text, font=font)
    except UnicodeEncodeError:
        box = draw.textbbox((0, 0), _ascii(text), font=font)
    return int(box[2] - box[0])


def _draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str,
               font: ImageFont.ImageFont) -> None:
    try:
        draw.text(xy, text, fill=LEGEND_TEXT, font=font)
    except UnicodeEncodeError:  # bitmap fonts only know Latin-1
        draw.text(xy, _ascii(text), fill=LEGEND_TEXT, font=font)


def _ascii(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")
