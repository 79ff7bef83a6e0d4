"""Helpers for the model tests: tiny seeded models and class-name lists."""

from __future__ import annotations

import torch

from fgaseg.model import FGASeg, fgaseg_tiny


def names(n: int) -> list:
    return [f"thing number {i}" for i in range(n)]


def rand_init_(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter (zero-initialised padding tokens, gammas ...) so tests see all paths."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def make_tiny_model(**overrides) -> FGASeg:
    torch.manual_seed(0)
    return rand_init_(FGASeg(fgaseg_tiny(**overrides))).eval()
