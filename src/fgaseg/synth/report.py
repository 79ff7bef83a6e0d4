"""Outputs of the synthetic benchmark: results JSON, markdown tables and overlay PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fgaseg.synth.vocabulary import Vocabulary

METRICS = ("mIoU_seen", "mIoU_unseen", "hIoU")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fmt(value: Optional[float]) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def fmt_mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def results_table(rows: List[Dict[str, object]]) -> str:
    """Markdown table of single runs: ``rows`` have ``name`` and the :data:`METRICS` keys.

    Rows with ``attributes`` (pixel accuracy of colour / pattern / shape) get those columns too.
    """
    lines = ["| model | mIoU seen | mIoU unseen | hIoU | colour % | pattern % | shape % | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        attrs = row.get("attributes") or {}
        lines.append(
            f"| {row['name']} | {fmt(row.get('mIoU_seen'))} | {fmt(row.get('mIoU_unseen'))} "
            f"| {fmt(row.get('hIoU'))} | {fmt(attrs.get('colour'))} | {fmt(attrs.get('pattern'))} "
            f"| {fmt(attrs.get('shape'))} | {fmt(row.get('seconds'))} |"
        )
    return "\n".join(lines)


def mean_std_table(groups: Dict[str, List[Dict[str, float]]], reference: Optional[str] = None) -> str:
    """Markdown table of ``name -> [run metrics, ...]`` as mean ± sample std over runs.

    With ``reference``, a last column gives the paired mean difference in hIoU to that row,
    over the seeds both have (runs without a ``"seed"`` are paired by position).
    """
    head = "| variant | runs | mIoU seen | mIoU unseen | hIoU |"
    sep = "|---|---|---|---|---|"
    if reference:
        head += f" Δ hIoU vs {reference} (paired) |"
        sep += "---|"
    lines = [head, sep]
    for name, runs in groups.items():
        cells = [fmt_mean_std([r.get(m, float("nan")) for r in runs]) for m in METRICS]
        line = f"| {name} | {len(runs)} | " + " | ".join(cells) + " |"
        if reference:
            ref = {r.get("seed", i): r for i, r in enumerate(groups.get(reference, []))}
            diffs = [r["hIoU"] - ref[k]["hIoU"] for i, r in enumerate(runs) if (k := r.get("seed", i)) in ref]
            pairs = f" ({len(diffs)} pairs)" if diffs and len(diffs) != len(runs) else ""
            line += (" – |" if name == reference else f" {_signed(diffs)}{pairs} |")
        lines.append(line)
    return "\n".join(lines)


def _signed(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:+.1f}"
    return f"{mean:+.1f} ± {np.std(values, ddof=1):.1f}"


# ---------------------------------------------------------------------------------- overlays
# high-contrast colours (Kelly's list); a panel shows only a handful of classes, so each panel
# gives its classes the first colours of this list instead of 72 hard-to-tell-apart hues
_DISTINCT = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
]


def panel_colours(class_ids: Sequence[int], num_classes: int) -> np.ndarray:
    """``(num_classes, 3) uint8`` colours: distinct ones for ``class_ids``, grey for the rest."""
    colours = np.full((num_classes, 3), 128, dtype=np.uint8)
    for k, class_id in enumerate(class_ids):
        colours[class_id] = _DISTINCT[k % len(_DISTINCT)]
    return colours


def paint(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, opacity: float = 0.75) -> np.ndarray:
    """Blend class colours over ``image (H, W, 3)``; label 255 keeps the image darkened."""
    valid = labels != 255
    colour_map = colours[np.where(valid, labels, 0)].astype(np.float32)
    mixed = image.astype(np.float32) * (1 - opacity) + colour_map * opacity
    out = np.where(valid[..., None], mixed, image.astype(np.float32) * 0.5)
    return out.astype(np.uint8)


def overlay_panel(
    image: np.ndarray, truth: np.ndarray, pred: np.ndarray, vocab: Vocabulary,
    scale: int = 4, title: str = "",
) -> Image.Image:
    """``image | ground truth | prediction`` side by side with a legend (``*`` = unseen class).

    Prediction is shown on labelled pixels only (background is not a class here).
    """
    pred = np.where(truth == 255, 255, pred)
    ids = [int(i) for i in np.unique(np.concatenate([truth.ravel(), pred.ravel()])) if i != 255]
    colours = panel_colours(ids, vocab.num_classes)
    tiles = [image, paint(image, truth, colours), paint(image, pred, colours)]
    strip = np.concatenate([np.kron(t, np.ones((scale, scale, 1), dtype=np.uint8)) for t in tiles], 1)
    height, width = strip.shape[:2]
    font = ImageFont.load_default()
    unseen = vocab.is_unseen()
    row = 14
    legend_h = 22 + row * len(ids)
    canvas = Image.new("RGB", (width, height + legend_h), (255, 255, 255))
    canvas.paste(Image.fromarray(strip), (0, 0))
    draw = ImageDraw.Draw(canvas)
    captions = ["input", "ground truth", "prediction"]
    tile_w = width // 3
    for k, text in enumerate(captions):
        draw.text((k * tile_w + 4, 4), text, fill=(255, 255, 255), font=font)
    y = height + 4
    if title:
        draw.text((4, y), title, fill=(0, 0, 0), font=font)
    y += 16
    for class_id in ids:
        in_truth, in_pred = (truth == class_id).any(), (pred == class_id).any()
        status = "" if in_truth and in_pred else (" (missed)" if in_truth else " (false positive)")
        name = vocab.phrases[class_id] + ("*" if unseen[class_id] else "") + status
        draw.rectangle([4, y + 2, 14, y + 12], fill=tuple(int(c) for c in colours[class_id]))
        draw.text((20, y + 1), name, fill=(0, 0, 0), font=font)
        y += row
    return canvas


def save_overlays(
    out_dir: Path, images: np.ndarray, truths: np.ndarray, preds: np.ndarray, vocab: Vocabulary,
) -> List[str]:
    """Write one ``overlay_XX.png`` per scene; returns the file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, (image, truth, pred) in enumerate(zip(images, truths, preds)):
        name = f"overlay_{k:02d}.png"
        overlay_panel(image, truth, pred, vocab, title=f"test scene {k}  (* = unseen class)").save(out_dir / name)
        names.append(name)
    return names
