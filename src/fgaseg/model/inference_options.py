"""Optional inference speed-ups: bf16 autocast and ``torch.compile`` (see docs/speed.md).

Both are off by default and change results only within a tolerance (bf16: ~1e-2 relative on
the logits; compile: float rounding). The exact speed-ups are always on: ``inference_mode``,
channels-last decoder convolutions, cache-sized class chunks, the padding-token and
per-image guidance shortcuts, and TopK re-using the decoded survivors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager, List

import torch
from torch import nn


@dataclass
class InferenceOptions:
    """How :meth:`FGASeg.segment_logits` runs (text embeddings are always computed in fp32)."""

    bf16: bool = False  # torch.autocast(bfloat16) over the image tower and the head
    compile: bool = False  # torch.compile the CLIP image blocks


def autocast_context(options: InferenceOptions, device: torch.device) -> ContextManager[Any]:
    """``torch.autocast(device.type, bfloat16)`` when ``options.bf16``, else a no-op context."""
    if options.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_targets(model: nn.Module) -> List[nn.Module]:
    """The modules whose ``forward`` is compiled: the CLIP image-tower blocks.

    The head's blocks are left eager: compiled, the Swin blocks (1.14x) and the decoder's
    Up-blocks (1.23x) ran slower than eager on this CPU (2 threads, 150 classes; docs/speed.md).
    """
    return list(model.clip.visual.transformer.resblocks)


def compile_blocks(model: nn.Module) -> int:
    """Wrap each target's ``forward`` in ``torch.compile(dynamic=True)``; returns how many.

    Compilation happens lazily on the first call (tens of seconds on CPU; cached on disk by
    Inductor for later processes).
    """
    count = 0
    for module in compile_targets(model):
        if not getattr(module, "_fgaseg_compiled", False):
            module.forward = torch.compile(module.forward, dynamic=True)
            module._fgaseg_compiled = True
            count += 1
    return count
