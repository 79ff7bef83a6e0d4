"""DETR-style 2-D sine positional encoding (as used by the official P2Tformer)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Normalised sine/cosine encoding of a (h, w) grid; no parameters.

    ``forward(x (B, C, h, w)) -> (B, 2 * num_pos_feats, h, w)``, identical for every image.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0,
                 normalize: bool = True, scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """The encoding of one grid, ``(2 * num_pos_feats, h, w)`` float32."""
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=device)[:, None].expand(h, w)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=device)[None, :].expand(h, w)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[-1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, None] / dim_t
        pos_y = y_embed[:, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
        return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.grid(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        return pos.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
