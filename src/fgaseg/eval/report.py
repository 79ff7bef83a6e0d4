"""Printing evaluation results as a table and writing them as JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, Union


def _fmt(value) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:5.1f}"


def format_table(results: Dict[str, object], columns: int = 3, name_width: int = 24) -> str:
    """Per-class IoU in ``columns`` columns, then the summary line (detectron2-like)."""
    per_class: Dict[str, object] = results["per_class_iou"]  # type: ignore[assignment]
    rows = []
    items = list(per_class.items())
    header = " | ".join(f"{'class':<{name_width}} {'IoU':>5}" for _ in range(min(columns,
                                                                              len(items))))
    rows.append(header)
    rows.append("-" * len(header))
    for start in range(0, len(items), columns):
        chunk = items[start:start + columns]
        rows.append(" | ".join(f"{name[:name_width]:<{name_width}} {_fmt(iou)}"
                               for name, iou in chunk))
    summary = (f"mIoU {_fmt(results['mIoU'])} | fwIoU {_fmt(results['fwIoU'])} | "
               f"mACC {_fmt(results['mACC'])} | pACC {_fmt(results['pACC'])} | "
               f"classes with GT {results['num_classes_present']}/{results['num_classes']}")
    title = results.get("dataset")
    lines = [f"== {title} ==" if title else "", *rows, "-" * len(header), summary]
    return "\n".join(line for line in lines if line != "")


def write_json(results: Dict[str, object], path: Union[str, Path]) -> Path:
    """Write ``results`` (NaN -> null) to ``path`` atomically."""
    def clean(value):
        if hasattr(value, "tolist"):  # tensors / arrays (e.g. the confusion matrix)
            value = value.tolist()
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(clean(results), indent=2, ensure_ascii=False))
    os.replace(tmp, path)
    return path
