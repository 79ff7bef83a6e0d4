"""CLIP's image tower (ViT) with CAT-Seg's dense mode and positional-embedding interpolation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.errors import ImageError
from fgaseg.clip.layers import LayerNorm, Transformer, init_transformer_


@dataclass
class DenseFeatures:
    """Dense outputs of the image tower.

    ``tokens (B, h*w, D)`` patch tokens after ``ln_post`` and ``proj``; ``cls (B, D)`` the CLS
    token of the same pass; ``grid (h, w)``; ``layers`` a list of ``(B, W, h, w)`` block outputs
    (CLS dropped) in the order requested.
    """

    tokens: torch.Tensor
    cls: torch.Tensor
    grid: Tuple[int, int]
    layers: List[torch.Tensor] = field(default_factory=list)

    def token_map(self) -> torch.Tensor:
        """Patch tokens as an image-like map ``(B, D, h, w)``."""
        b, _, d = self.tokens.shape
        return self.tokens.transpose(1, 2).reshape(b, d, *self.grid)


class VisionTransformer(nn.Module):
    """OpenAI's ``VisionTransformer`` (pre-LN ViT, QuickGELU), batch-first."""

    def __init__(
        self, image_resolution: int, patch_size: int, width: int, layers: int, heads: int,
        output_dim: int,
    ) -> None:
        super().__init__()
        self.image_resolution = image_resolution
        self.patch_size = patch_size
        self.width = width
        self.output_dim = output_dim
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        grid = image_resolution // patch_size
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        init_transformer_(self.transformer)

    def grid_for(self, images: torch.Tensor) -> Tuple[int, int]:
        """Token grid ``(h, w)`` for images ``(B, 3, H, W)``; ImageError if not patch-divisible."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ImageError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        p = self.patch_size
        if height % p or width % p or height < p or width < p:
            raise ImageError(
                f"image size {height}x{width} is not a positive multiple of the CLIP patch size {p}"
            )
        return height // p, width // p

    def resized_positional_embedding(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Positional embedding ``(1 + h*w, W)`` for a token grid, bicubically interpolated."""
        pos = self.positional_embedding
        side = int(round((pos.shape[0] - 1) ** 0.5))
        if (side, side) == tuple(grid):
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos.float(), size=tuple(grid), mode="bicubic", align_corners=False
        ).to(pos.dtype)
        patch_pos = patch_pos.reshape(pos.shape[1], -1).t()
        return torch.cat([cls_pos, patch_pos], dim=0)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patchify, prepend CLS, add (interpolated) positions, ``ln_pre``: ``(B, 1+h*w, W)``."""
        grid = self.grid_for(images)
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (B, W, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.resized_positional_embedding(grid).to(x.dtype)
        return self.ln_pre(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then ``proj``: ``(..., W)`` -> ``(..., D)``."""
        return self.ln_post(x) @ self.proj

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embedding ``(B, D)`` (not normalised) for CLIP-normalised images."""
        x, _ = self.transformer(self.embed(images))
        return self.project(x[:, 0])

    def forward_dense(
        self, images: torch.Tensor, layers: Sequence[int] = (), dense_last_block: bool = True
    ) -> DenseFeatures:
        """All tokens projected into the joint space plus chosen intermediate block outputs."""
        layers = list(layers)
        depth = len(self.transformer.resblocks)
        for index in layers:
            if not 0 <= index < depth:
                raise IndexError(f"CLIP layer index {index} out of range for {depth} blocks")
        grid = self.grid_for(images)
        x, collected = self.transformer(
            self.embed(images), dense_last_block=dense_last_block, return_layers=layers
        )
        x = self.project(x)
        b = x.shape[0]
        maps = [t[:, 1:].transpose(1, 2).reshape(b, self.width, *grid) for t in collected]
        return DenseFeatures(tokens=x[:, 1:], cls=x[:, 0], grid=grid, layers=maps)
