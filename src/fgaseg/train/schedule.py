"""Learning-rate schedule: detectron2's WarmupCosineLR as a multiplier of each group's lr."""

from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(max_iters: int, warmup_iters: int = 0, warmup_factor: float = 1.0,
                  min_ratio: float = 0.0) -> Callable[[int], float]:
    """``step -> factor``: linear warmup from ``warmup_factor`` over ``warmup_iters`` steps,
    times a half cosine from 1 at step 0 to ``min_ratio`` at ``max_iters``.

    With the recipe's ``warmup_iters=0`` this is ``0.5 * (1 + cos(pi * step / max_iters))``.
    """

    def factor(step: int) -> float:
        progress = min(step, max_iters) / max(1, max_iters)
        cosine = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if step < warmup_iters:
            alpha = step / warmup_iters
            return cosine * (warmup_factor * (1 - alpha) + alpha)
        return cosine

    return factor
