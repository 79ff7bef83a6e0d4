"""`ColourSegmenter`: the smallest segmenter that follows the protocol, with no weights.

Each class name is mapped to an RGB colour (CSS colour words such as "red" or "sky blue";
any other name gets a fixed colour derived from its text) and a pixel scores each class by
the negative squared distance to that colour. It makes the predict API, CLI, web demo and
ONNX export testable and demonstrable without a trained model.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import torch
from torch import nn

COLOUR_WORDS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128),
    "grey": (128, 128, 128), "red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255),
    "yellow": (255, 255, 0), "orange": (255, 165, 0), "purple": (128, 0, 128),
    "pink": (255, 192, 203), "brown": (140, 80, 20), "cyan": (0, 255, 255),
    "sky": (135, 206, 235), "sky blue": (135, 206, 235), "grass": (60, 170, 60),
    "sand": (220, 200, 150), "water": (30, 90, 200), "snow": (250, 250, 250),
}


def name_to_colour(name: str) -> tuple[float, float, float]:
    """RGB in [0, 1] for a class name (colour word, else a hash of the name)."""
    key = " ".join(name.lower().split())
    if key in COLOUR_WORDS:
        rgb = COLOUR_WORDS[key]
    else:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        rgb = (digest[0], digest[1], digest[2])
    return rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0


class ColourSegmenter(nn.Module):
    """Scores ``(B, T, H, W)`` = ``-||pixel - colour(name)||^2 * sharpness``."""

    def __init__(self, sharpness: float = 10.0) -> None:
        super().__init__()
        self.sharpness = sharpness
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # carries device
        self.encode_calls = 0  # how often class colours were computed (cache test hook)
        self._cache: Optional[tuple[tuple[str, ...], torch.Tensor]] = None

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def encode_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """``(T, 3)`` colours, cached for the last class list (like text embeddings)."""
        key = tuple(class_names)
        if self._cache is None or self._cache[0] != key:
            self.encode_calls += 1
            colours = torch.tensor([name_to_colour(n) for n in key], dtype=torch.float32)
            self._cache = (key, colours.to(self.device))
        return self._cache[1]

    def segment_logits(self, images: torch.Tensor, class_names: Sequence[str], *,
                       sliding: bool = False, topk: Optional[int] = None) -> torch.Tensor:
        colours = self.encode_classes(class_names).to(images.dtype)  # (T, 3)
        diff = images[:, None] - colours[None, :, :, None, None]  # (B, T, 3, H, W)
        return -(diff * diff).sum(2) * self.sharpness

    def predict(self, images, classes, **kwargs):
        from fgaseg.predict.api import predict

        return predict(self, images, classes, **kwargs)
