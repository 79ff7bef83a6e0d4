"""Evaluation: confusion-matrix metrics (mIoU, per-class IoU, fwIoU, pixel accuracy) and the
benchmark loop (whole-image or sliding-window inference, DDP-aware)."""

from fgaseg.eval.evaluator import EvalSettings, argmax_resized, evaluate
from fgaseg.eval.metrics import ConfusionMatrix, metrics_from_confusion
from fgaseg.eval.report import format_table, write_json

__all__ = ["ConfusionMatrix", "EvalSettings", "argmax_resized", "evaluate", "format_table",
           "metrics_from_confusion", "write_json"]
