"""OpenAI-style CLIP: image tower, text tower and the joint embedding space."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn

from fgaseg.clip.config import CLIPConfig
from fgaseg.clip.layers import LayerNorm, Transformer, init_transformer_
from fgaseg.clip.vision import DenseFeatures, VisionTransformer


def _is_exporting() -> bool:
    """True while tracing, exporting or compiling (no data-dependent shapes allowed then)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiling())


class CLIP(nn.Module):
    """CLIP with OpenAI parameter names (attention q/k/v weights split as in CAT-Seg)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.visual = VisionTransformer(
            image_resolution=config.image_resolution,
            patch_size=config.vision_patch_size,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            output_dim=config.embed_dim,
        )
        self.transformer = Transformer(
            config.transformer_width, config.transformer_layers, config.transformer_heads
        )
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(
            torch.empty(config.context_length, config.transformer_width)
        )
        self.ln_final = LayerNorm(config.transformer_width)
        self.text_projection = nn.Parameter(
            torch.empty(config.transformer_width, config.embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._init_text_parameters()

    def _init_text_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=self.config.transformer_width**-0.5)
        init_transformer_(self.transformer)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    # image tower ---------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Global embedding ``(B, D)`` (not normalised) of CLIP-normalised images ``(B, 3, H, W)``.

        Any ``H, W`` divisible by the patch size works (positional embedding interpolated).
        """
        return self.visual(images)

    def encode_image_dense(
        self, images: torch.Tensor, layers: Sequence[int] = (), dense_last_block: bool = True
    ) -> DenseFeatures:
        """Dense features: ``tokens (B, h*w, D)``, ``cls (B, D)``, ``grid``, ``layers``.

        ``layers`` are 0-based block indices whose outputs are returned as ``(B, W, h, w)``.
        With ``dense_last_block`` (default) the last block uses CAT-Seg's value path; with
        ``False`` the tokens are those of the ordinary forward pass.
        """
        return self.visual.forward_dense(images, layers, dense_last_block)

    # text tower ----------------------------------------------------------------------------
    def causal_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Additive ``(L, L)`` mask: ``-inf`` above the diagonal."""
        mask = torch.full((length, length), float("-inf"), device=device, dtype=self.dtype)
        return mask.triu_(1)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Text embedding ``(N, D)`` (not normalised) of token ids ``(N, L)``, ``L <= context``.

        The sequence is read at its EOT token, i.e. the position of the largest id.
        """
        token_ids = token_ids.to(self.token_embedding.weight.device)
        if token_ids.shape[1] > self.positional_embedding.shape[0]:
            raise ValueError(
                f"token sequence of length {token_ids.shape[1]} exceeds the context length "
                f"{self.positional_embedding.shape[0]}"
            )
        eot = token_ids.argmax(dim=-1)
        if not _is_exporting():
            # causal attention: positions after the last EOT cannot change the result, skip them
            token_ids = token_ids[:, : int(eot.max()) + 1]
        length = token_ids.shape[1]
        x = self.token_embedding(token_ids).to(self.dtype)
        x = x + self.positional_embedding[:length].to(x.dtype)
        x, _ = self.transformer(x, attn_mask=self.causal_mask(length, x.device))
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.text_projection

    def forward(
        self, images: torch.Tensor, token_ids: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """CLIP logits ``(B, N)`` per image and ``(N, B)`` per text (scaled cosine)."""
        image = self.encode_image(images)
        text = self.encode_text(token_ids)
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        logits = self.logit_scale.exp() * image @ text.t()
        return logits, logits.t()
