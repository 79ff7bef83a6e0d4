"""Load a segmenter for the CLI, web demo and export: `--weights`, `--method`, `--device`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from fgaseg.errors import ConfigError, FGASegError, WeightsError

METHODS = ("fgaseg", "training-free")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``; ``cuda`` / ``cuda:N`` (must exist)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but no CUDA GPU is available; "
                              "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only "
                              f"{torch.cuda.device_count()} CUDA GPU(s) exist")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def load_segmenter(weights: str, method: str = "fgaseg", device: str = "auto") -> Any:
    """A segmenter in eval mode on `device`.

    ``fgaseg``: ``FGASeg.from_pretrained(weights)`` (our folder, an official checkpoint or a
    hub id). ``training-free``: ``TrainingFreeSegmenter.from_clip(weights)`` (a CLIP name or
    weights file). Any failure becomes a one-line WeightsError.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not weights:
        raise WeightsError("no weights given; pass --weights PATH_OR_NAME")
    target = resolve_device(device)
    if method == "fgaseg":
        _check_local_path(weights)
        loader = _import("fgaseg.model", "FGASeg").from_pretrained
    else:
        loader = _import("fgaseg.training_free", "TrainingFreeSegmenter").from_clip
    try:
        segmenter = loader(weights)
    except FGASegError:
        raise
    except Exception as exc:  # wrong architecture, corrupt file, missing keys, ...
        raise WeightsError(f"{weights}: cannot load {method} weights "
                           f"({type(exc).__name__}: {_one_line(exc)})") from None
    return segmenter.to(target).eval()


def _check_local_path(weights: str) -> None:
    path = Path(weights).expanduser()
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            raise WeightsError(f"{weights}: weights folder is empty")
        return
    if not _HUB_ID.match(weights):
        raise WeightsError(f"{weights}: no such weights file or folder")


def _import(module: str, name: str) -> Any:
    try:
        from importlib import import_module

        return getattr(import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{module}.{name} is not available in this build") from None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
