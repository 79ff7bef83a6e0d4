"""Drawing the synthetic world in numpy: shapes, patterns, cluttered backgrounds.

Everything takes a ``numpy.random.Generator`` so a scene is a pure function of its seed.
Images are ``(H, W, 3) uint8``; label maps ``(H, W) uint8`` with 255 for background/clutter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from fgaseg.synth.vocabulary import COLOURS, PATTERNS, SHAPES, Attributes

IGNORE = 255


@dataclass
class PlacedObject:
    """One drawn object: its class and geometry (centre in pixels, radius, rotation)."""

    class_id: int
    centre: Tuple[float, float]  # (y, x)
    radius: float
    angle: float


def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    # pixel centres
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords, indexing="ij")  # (yy, xx)


def shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, centre, radius, angle) -> np.ndarray:
    """Boolean mask of a shape with the given centre ``(y, x)``, radius and rotation."""
    dy, dx = yy - centre[0], xx - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated local frame
    if shape == "circle":
        return u * u + v * v <= radius * radius
    if shape == "square":
        half = radius * 0.82  # similar area to the circle
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "triangle":
        # equilateral triangle with circumradius ~1.2 r: three half-planes at 120° steps
        r = radius * 1.2
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = np.pi / 2 + k * 2 * np.pi / 3
            inside &= (u * np.cos(theta) + v * np.sin(theta)) <= r / 2
        return inside
    if shape == "cross":
        arm, half = radius * 1.05, radius * 0.38
        return ((np.abs(u) <= arm) & (np.abs(v) <= half)) | ((np.abs(v) <= arm) & (np.abs(u) <= half))
    raise ValueError(f"unknown shape {shape!r}")


OUTLINE_BRIGHTNESS = 0.15  # outline pixels keep this share of their colour: nearly black


def outline_mask(label: np.ndarray, width: int) -> np.ndarray:
    """Object pixels within ``width`` steps (4-neighbourhood) of a pixel with another label.

    ``label (H, W)`` -> ``(H, W) bool``. Background (255) pixels are never outlined, and the
    image border does not count as an edge (an object cut by the border gets no line there).
    """
    inner = np.ones(label.shape, dtype=bool)
    padded = np.pad(label, width, mode="edge")
    h, w = label.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            if abs(dy) + abs(dx) <= width:
                inner &= padded[width + dy:width + dy + h, width + dx:width + dx + w] == label
    return ~inner & (label != IGNORE)


def pattern_mask(pattern: str, yy, xx, rng: np.random.Generator) -> np.ndarray:
    """Where the pattern's secondary (dark) colour goes; all False for ``solid``."""
    if pattern == "solid":
        return np.zeros(yy.shape, dtype=bool)
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * xx + sin * yy, -sin * xx + cos * yy
    if pattern == "striped":
        period = rng.uniform(4.0, 5.5)
        phase = rng.uniform(0, period)
        return np.mod(u + phase, period) < period * 0.45
    if pattern == "dotted":
        period = rng.uniform(4.5, 6.0)
        pu, pv = rng.uniform(0, period, size=2)
        du = np.mod(u + pu, period) - period / 2
        dv = np.mod(v + pv, period) - period / 2
        return du * du + dv * dv <= (period * 0.26) ** 2
    raise ValueError(f"unknown pattern {pattern!r}")


def background(size: int, rng: np.random.Generator, yy, xx, clutter: Tuple[int, int]) -> np.ndarray:
    """A noisy, low-saturation gradient with small muted clutter blobs: ``(H, W, 3) float``."""
    base = rng.uniform(70, 180) + rng.uniform(-18, 18, size=3)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-8
    ramp = ((yy * direction[0] + xx * direction[1]) / size - 0.5) * rng.uniform(0, 50)
    image = base[None, None, :] + ramp[..., None]
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        centre = rng.uniform(0, size, size=2)
        radius = rng.uniform(1.0, 3.0)
        blob = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius * radius
        grey = rng.uniform(40, 220)
        image[blob] = grey + rng.uniform(-25, 25, size=3)  # muted: near-grey
    return image


def draw_objects(
    attributes: Sequence[Attributes],
    class_ids: Sequence[int],
    size: int,
    rng: np.random.Generator,
    radius_range: Tuple[float, float],
    clutter: Tuple[int, int],
    min_visible: float = 0.45,
    centred: bool = False,
    tries: int = 30,
    pattern_dark: Tuple[float, float] = (0.2, 0.4),
    noise: float = 7.0,
    max_rotation: float = 180.0,
    outline: int = 0,
) -> Tuple[np.ndarray, np.ndarray, List[PlacedObject]]:
    """Render objects (later ones occlude earlier ones) over a cluttered background.

    Placement is re-drawn until every object keeps at least ``min_visible`` of its area visible
    (the last try is kept otherwise). Returns ``image (H, W, 3) uint8``, ``label (H, W) uint8``
    (class id, 255 background) and the placed objects. ``outline`` > 0 darkens that many pixels
    along the boundary of every visible object (see :func:`outline_mask`).
    """
    yy, xx = _grid(size)
    colour_names = list(COLOURS)
    image = background(size, rng, yy, xx, clutter)
    for attempt in range(tries):
        label = np.full((size, size), IGNORE, dtype=np.uint8)
        placed, masks = [], []
        for class_id in class_ids:
            radius = rng.uniform(*radius_range)
            margin = radius * 0.6
            if centred:
                centre = size / 2 + rng.uniform(-size / 8, size / 8, size=2)
            else:
                centre = rng.uniform(margin, size - margin, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            if max_rotation < 180:  # same draw, mapped to [-max_rotation, +max_rotation] degrees
                angle = (angle - np.pi) * max_rotation / 180
            obj = PlacedObject(int(class_id), (float(centre[0]), float(centre[1])), float(radius), float(angle))
            shape = SHAPES[attributes[len(placed)][2]]
            mask = shape_mask(shape, yy, xx, obj.centre, obj.radius, obj.angle)
            label[mask] = class_id
            placed.append(obj)
            masks.append(mask)
        areas_ok = all(
            (label[m] == obj.class_id).mean() >= min_visible if m.any() else False
            for m, obj in zip(masks, placed)
        )
        if areas_ok or attempt == tries - 1:
            break
    for (colour, pattern, _), mask in zip(attributes, masks):
        rgb = np.asarray(COLOURS[colour_names[colour]], dtype=np.float32)
        rgb = np.clip(rgb + rng.normal(0, 12, size=3), 0, 255)
        dark = rgb * rng.uniform(*pattern_dark)
        fill = np.where(pattern_mask(PATTERNS[pattern], yy, xx, rng)[..., None], dark, rgb)
        image[mask] = fill[mask]
    if outline > 0:
        image[outline_mask(label, outline)] *= OUTLINE_BRIGHTNESS
    image = image + rng.normal(0, noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label, placed
