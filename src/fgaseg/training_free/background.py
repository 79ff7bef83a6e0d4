"""Score-threshold "background": pixels no class is confident about get a background label."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch

BACKGROUND = "background"


def background_index(class_names: Sequence[str]) -> Optional[int]:
    """Index of a class literally named "background" (case and spaces ignored), else None."""
    for index, name in enumerate(class_names):
        if name.strip().lower() == BACKGROUND:
            return index
    return None


def output_class_names(class_names: Sequence[str]) -> List[str]:
    """Class names of the thresholded scores: ``class_names`` plus "background" unless present."""
    names = list(class_names)
    return names if background_index(names) is not None else names + [BACKGROUND]


def apply_background_threshold(
    logits: torch.Tensor, class_names: Sequence[str], threshold: float
) -> Tuple[torch.Tensor, List[str]]:
    """Scores where the argmax is background exactly where the top class probability < threshold.

    ``logits (B, T, H, W)`` (scaled cosine) become log-probabilities ``log_softmax(logits)``.
    If a class is named "background" its score is raised to at least ``log(threshold)``;
    otherwise a constant ``log(threshold)`` channel is appended as the last class (named
    "background"). Returns the scores and their class names.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"background threshold must be in (0, 1], got {threshold}")
    log_probs = torch.log_softmax(logits.float(), dim=1)
    floor = math.log(threshold)
    index = background_index(class_names)
    if index is not None:
        log_probs[:, index] = log_probs[:, index].clamp(min=floor)
        return log_probs, list(class_names)
    b, _, h, w = log_probs.shape
    background = log_probs.new_full((b, 1, h, w), floor)
    return torch.cat([log_probs, background], dim=1), output_class_names(class_names)
