"""CLIP architecture configs: the OpenAI ViT models and small ones for tests/synthetic runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List

from fgaseg.errors import ConfigError


@dataclass
class CLIPConfig:
    """Hyper-parameters of an OpenAI-style CLIP ViT (names follow OpenAI's ``CLIP.__init__``)."""

    embed_dim: int = 512
    image_resolution: int = 224  # side of the positional-embedding grid times the patch size
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 16
    vision_heads: int = 0  # 0 -> vision_width // 64
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 0  # 0 -> transformer_width // 64
    transformer_layers: int = 12

    def __post_init__(self) -> None:
        if self.vision_heads <= 0:
            self.vision_heads = max(1, self.vision_width // 64)
        if self.transformer_heads <= 0:
            self.transformer_heads = max(1, self.transformer_width // 64)
        if self.vision_width % self.vision_heads or self.transformer_width % self.transformer_heads:
            raise ConfigError("CLIP widths must be divisible by their numbers of attention heads")
        if self.image_resolution % self.vision_patch_size:
            raise ConfigError(
                f"CLIP image_resolution {self.image_resolution} is not divisible by the patch size "
                f"{self.vision_patch_size}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the (square) positional-embedding grid."""
        return self.image_resolution // self.vision_patch_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CLIPConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown CLIP config keys: {', '.join(unknown)}")
        return cls(**values)


_NAMED: Dict[str, CLIPConfig] = {
    "ViT-B/32": CLIPConfig(512, 224, 12, 768, 32, 12, 77, 49408, 512, 8, 12),
    "ViT-B/16": CLIPConfig(512, 224, 12, 768, 16, 12, 77, 49408, 512, 8, 12),
    "ViT-L/14": CLIPConfig(768, 224, 24, 1024, 14, 16, 77, 49408, 768, 12, 12),
    "ViT-L/14@336px": CLIPConfig(768, 336, 24, 1024, 14, 16, 77, 49408, 768, 12, 12),
    # small models for tests and the synthetic benchmark
    "tiny": CLIPConfig(128, 64, 4, 128, 8, 2, 77, 49408, 128, 2, 2),
    # B/16 and B/32 patch geometry with a small width/depth (heads = width // 64 as in OpenAI's)
    "tiny-B/16": CLIPConfig(64, 224, 2, 128, 16, 2, 77, 49408, 128, 2, 2),
    "tiny-B/32": CLIPConfig(64, 224, 2, 128, 32, 2, 77, 49408, 128, 2, 2),
}


def list_models() -> List[str]:
    """Names accepted by :func:`fgaseg.clip.build_clip`."""
    return list(_NAMED)


def get_config(name: str) -> CLIPConfig:
    """A fresh copy of the named config; raises ConfigError for an unknown name."""
    if name not in _NAMED:
        raise ConfigError(f"unknown CLIP model {name!r}; choose one of: {', '.join(_NAMED)}")
    return dataclasses.replace(_NAMED[name])
