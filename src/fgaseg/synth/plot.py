"""Line charts as PNG with Pillow only (no matplotlib dependency): learning curves of the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# distinguishable colours for up to 8 series, then they repeat
_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (23, 190, 207)]


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Running mean over ``window`` points (shorter at the start), so noisy losses read as curves."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def line_chart(
    panels: Sequence[Tuple[str, Dict[str, Sequence[Tuple[float, float]]]]],
    path: Path, xlabel: str = "step", size: Tuple[int, int] = (520, 320), log_y: Sequence[bool] = (),
) -> Path:
    """Write one PNG with one panel per ``(title, {series name: [(x, y), ...]})``, side by side.

    ``log_y[k]`` draws panel k with a logarithmic y axis (positive values only)."""
    font = ImageFont.load_default()
    width, height = size
    canvas = Image.new("RGB", (width * max(1, len(panels)), height), "white")
    for k, (title, series) in enumerate(panels):
        log = k < len(log_y) and bool(log_y[k])
        _panel(ImageDraw.Draw(canvas), (k * width, 0, width, height), title, series, xlabel, font, log)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _label(text: str) -> str:
    # Pillow's built-in bitmap font has no U+2212 minus sign
    return text.replace("\u2212", "-")


def _panel(draw, box, title, series, xlabel, font, log_y: bool = False) -> None:
    x0, y0, width, height = box
    left, right, top, bottom = x0 + 58, x0 + width - 12, y0 + 26, y0 + height - 40
    if log_y:
        series = {name: [(x, float(np.log10(y))) for x, y in values if y > 0] for name, values in series.items()}
    points = [p for values in series.values() for p in values if np.isfinite(p[1])]
    draw.text((x0 + 58, y0 + 6), _label(title), fill="black", font=font)
    if not points:
        draw.text((left, (top + bottom) // 2), "no data", fill="grey", font=font)
        return
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    xmin, xmax = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    ymin, ymax = float(ys.min()), float(ys.max())
    pad = (ymax - ymin) * 0.05 or 1.0
    ymin, ymax = ymin - pad, ymax + pad

    def to_px(x: float, y: float) -> Tuple[float, float]:
        return (left + (x - xmin) / (xmax - xmin) * (right - left),
                bottom - (y - ymin) / (ymax - ymin) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    for frac in (0.0, 0.5, 1.0):  # three ticks per axis are enough to read a curve
        y = ymin + frac * (ymax - ymin)
        py = to_px(xmin, y)[1]
        draw.line((left - 4, py, left, py), fill="black")
        draw.text((x0 + 4, py - 6), f"{10 ** y if log_y else y:.3g}", fill="black", font=font)
        x = xmin + frac * (xmax - xmin)
        px = to_px(x, ymin)[0]
        draw.line((px, bottom, px, bottom + 4), fill="black")
        draw.text((px - 10, bottom + 6), f"{x:.0f}", fill="black", font=font)
    draw.text(((left + right) // 2 - 12, bottom + 22), xlabel, fill="black", font=font)
    if log_y:
        draw.text((x0 + 4, bottom + 22), "log scale", fill="grey", font=font)
    names = [_label(name) for name in series]
    legend = right - 24 - max((draw.textlength(name, font=font) for name in names), default=0)
    for i, (name, values) in enumerate(zip(names, series.values())):
        colour = _COLOURS[i % len(_COLOURS)]
        line = [to_px(x, y) for x, y in values if np.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        elif line:
            draw.ellipse((line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2), fill=colour)
        ty = top + 4 + 12 * i
        draw.line((legend - 20, ty + 6, legend - 4, ty + 6), fill=colour, width=2)
        draw.text((legend, ty), name, fill="black", font=font)


def curve(values: Sequence[float], window: int = 1, start: int = 1) -> List[Tuple[float, float]]:
    """``[(step, smoothed value), ...]`` with steps counted from ``start``."""
    return [(start + i, float(v)) for i, v in enumerate(smooth(values, window))]
