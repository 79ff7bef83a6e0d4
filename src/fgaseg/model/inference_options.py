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
    compile: bool = False  # torch.compile the per-class blocks and the CLIP image blocks


def autocast_context(options: InferenceOptions, device: torch.device) -> ContextManager[Any]:
    """``torch.autocast(device.type, bfloat16)`` when ``options.bf16``, else a no-op context."""
    if options.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_targets(model: nn.Module) -> List[nn.Module]:
    """The modules whose ``forward`` is compiled: shape-stable, loop-free blocks that run once
    per chunk of classes (Swin blocks, Up-blocks, LCS decoder projection) or per image (CLIP
    image-tower blocks)."""
    head = model.head
    targets: List[nn.Module] = list(model.clip.visual.transformer.resblocks)
    targets += [head.decoder1, head.decoder2]
    if getattr(head, "use_lcs", False):
        targets.append(head.corr_local_decoder_projection)
    return targets


def compile_blocks(model: nn.Module) -> int:
    """Wrap each target's ``forward`` in ``torch.compile(dynamic=True)``; returns how many.

    Swin blocks are compiled through their ``forward_windows`` (what the wrapper calls).
    Compilation happens lazily on the first call (slow: tens of seconds per block on CPU).
    Compiled blocks also run on the worker threads of :mod:`fgaseg.model.parallel_chunks`:
    Dynamo compiles under one process-wide lock, so two workers reaching the same block
    compile it once, one after the other.
    """
    count = 0
    for module in compile_targets(model):
        if not getattr(module, "_fgaseg_compiled", False):
            module.forward = torch.compile(module.forward, dynamic=True)
            module._fgaseg_compiled = True
            count += 1
    for layer in model.head.layers:
        for block in (layer.swin_block.block_1, layer.swin_block.block_2):
            if not getattr(block, "_fgaseg_compiled", False):
                block.forward_windows = torch.compile(block.forward_windows, dynamic=True)
                block._fgaseg_compiled = True
                count += 1
    return count
