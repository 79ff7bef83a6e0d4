"""Building CLIP models by name or config with random initialisation."""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import torch

from fgaseg.clip.config import CLIPConfig, get_config
from fgaseg.errors import ConfigError
from fgaseg.clip.model import CLIP


def build_clip(
    name: Union[str, CLIPConfig], image_size: Optional[int] = None, seed: Optional[int] = None
) -> CLIP:
    """A randomly initialised CLIP from a model name (see ``list_models()``) or a CLIPConfig.

    ``image_size`` overrides ``image_resolution`` (the native positional-embedding grid);
    other sizes still work at run time through interpolation. ``seed`` makes the weights
    reproducible without touching the global RNG.
    """
    if isinstance(name, CLIPConfig):
        config = dataclasses.replace(name)
    elif isinstance(name, str):
        config = get_config(name)
    else:
        raise ConfigError(f"build_clip expects a model name or CLIPConfig, got {type(name).__name__}")
    if image_size is not None:
        config = dataclasses.replace(config, image_resolution=int(image_size))
    if seed is None:
        return CLIP(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIP(config)
