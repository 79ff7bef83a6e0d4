"""What an official CAT-Seg / FGA-seg ``model`` dict says about its architecture.

Every switch of the official configs that changes the state dict is read from tensor shapes
and key names; switches that leave no trace (attention heads, class pooling, ``pad_len``'s
value, loss weights) take the values of all released configs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch

from fgaseg.clip.config import CLIPConfig
from fgaseg.clip.loading import infer_config
from fgaseg.errors import WeightsError

PREDICTOR = "sem_seg_head.predictor."
CLIP_PREFIX = PREDICTOR + "clip_model."
HEAD_PREFIX = PREDICTOR + "transformer."
P2T_PREFIX = PREDICTOR + "DCDT."
PROJECTOR_PREFIX = PREDICTOR + "proj."

# (vision width, patch size, vision layers) -> (official name, run-time resolution of the CLIP
# input, 0-based CLIP blocks feeding upsample1/upsample2). The positional-embedding grid is
# OpenAI's (14 for B/16, 24 for L/14@336) in the released files; another grid is kept as is.
_KNOWN_CLIPS = {
    (768, 16, 12): ("ViT-B/16", 384, (3, 7)),
    (1024, 14, 24): ("ViT-L/14@336px", 336, (7, 15)),
}


@dataclass(frozen=True)
class OfficialArchitecture:
    """The architecture of an official checkpoint, in the official configs' terms."""

    family: str  # "catseg" | "fgaseg"
    clip_name: str  # "ViT-B/16" | "ViT-L/14@336px"
    clip_config: CLIPConfig
    clip_resolution: int  # side the CLIP input is resized to (384 / 336)
    guidance_layers: Tuple[int, int]  # CLIP blocks feeding upsample1 / upsample2
    decoder: str  # "fast" (aux heads, TopK) | "plain"
    fusion: Optional[str]  # "cat" | "add" (FGA-seg), None (CAT-Seg)
    p2t_layers: int  # 0 for CAT-Seg
    kernel_size: Optional[int]  # LCS kernel (FGA-seg), None (CAT-Seg)
    prompt_channels: int  # number of prompt templates P
    num_layers: int  # aggregation layers
    hidden_dim: int
    appearance_guidance_dim: int
    appearance_guidance_proj_dim: int
    text_guidance_dim: int
    text_guidance_proj_dim: int
    decoder_dims: Tuple[int, int]
    decoder_guidance_dims: Tuple[int, int]
    decoder_guidance_proj_dims: Tuple[int, int]
    feature_resolution: int  # token grid side of the cost volume (24)
    window_size: int  # Swin window
    pad_len: int  # class padding length (0 when the checkpoint has no padding tokens)
    projector_dim: Optional[int]  # T2P alignment head vision dim (FGA-seg), None (CAT-Seg)

    def describe(self) -> str:
        """One line, e.g. ``FGA-seg ViT-B/16, fast decoder, fusion cat, 1 P2T layer, LCS k=3``."""
        if self.family == "catseg":
            return f"CAT-Seg {self.clip_name}, {self.num_layers} aggregation layers, P={self.prompt_channels}"
        return (
            f"FGA-seg {self.clip_name}, {self.decoder} decoder, fusion {self.fusion}, "
            f"{self.p2t_layers} P2T layer{'s' if self.p2t_layers != 1 else ''}, LCS kernel "
            f"{self.kernel_size}, P={self.prompt_channels}"
        )


def _sub(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _shape(state: Mapping[str, torch.Tensor], key: str, prefix: str = "") -> Tuple[int, ...]:
    if key not in state:
        raise WeightsError(f"official checkpoint lacks {prefix}{key}")
    return tuple(state[key].shape)


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if indices and indices != set(range(len(indices))):
        raise WeightsError(f"official checkpoint has non-contiguous {pattern.split('(')[0]} indices")
    return len(indices)


def infer_clip(state: Mapping[str, torch.Tensor]) -> Tuple[str, CLIPConfig, int, Tuple[int, int]]:
    """(official name, CLIPConfig, run-time resolution, guidance layers) of ``clip_model.*``."""
    clip_state = _sub(state, CLIP_PREFIX)
    config = infer_config(clip_state, source="official checkpoint's clip_model")
    key = (config.vision_width, config.vision_patch_size, config.vision_layers)
    if key not in _KNOWN_CLIPS:
        raise WeightsError(
            f"official checkpoint uses an unsupported CLIP (width {config.vision_width}, patch "
            f"{config.vision_patch_size}, {config.vision_layers} layers); only ViT-B/16 and ViT-L/14@336px exist"
        )
    name, resolution, layers = _KNOWN_CLIPS[key]
    return name, config, resolution, layers


def infer_architecture(state: Mapping[str, torch.Tensor]) -> OfficialArchitecture:
    """Read the architecture from an official ``model`` dict (keys with official prefixes)."""
    clip_name, clip_config, clip_resolution, guidance_layers = infer_clip(state)
    head = _sub(state, HEAD_PREFIX)
    if not head:
        raise WeightsError(f"official checkpoint has no {HEAD_PREFIX}* weights")
    family = "fgaseg" if any(key.startswith(P2T_PREFIX) for key in state) else "catseg"

    conv1 = _shape(head, "conv1.weight", HEAD_PREFIX)
    hidden_dim, prompt_channels = conv1[0], conv1[1]
    guidance = _shape(head, "guidance_projection.0.weight", HEAD_PREFIX)
    text_guidance = _shape(head, "text_guidance_projection.0.weight", HEAD_PREFIX)
    dec_guidance = [_shape(head, f"decoder_guidance_projection.{i}.0.weight", HEAD_PREFIX) for i in (0, 1)]
    decoder_dims = tuple(
        _shape(head, f"decoder{i}.conv.double_conv.0.weight", HEAD_PREFIX)[0] for i in (1, 2)
    )
    num_layers = _count(head, r"layers\.(\d+)\.")
    if num_layers == 0:
        raise WeightsError(f"official checkpoint has no {HEAD_PREFIX}layers.* (aggregation layers)")

    mask_key = "layers.0.swin_block.block_2.attn_mask"
    q_key = "layers.0.swin_block.block_1.attn.q.weight"
    _shape(head, q_key, HEAD_PREFIX)
    if mask_key in head:
        windows, area, _ = head[mask_key].shape
        window_size = math.isqrt(area)
        feature_resolution = window_size * math.isqrt(windows)
    else:  # a window as large as the grid is never shifted, so no mask is stored
        window_size = feature_resolution = clip_resolution // clip_config.vision_patch_size
    pad_len = 256 if "layers.0.attention.padding_tokens" in head else 0

    decoder, fusion, kernel_size, p2t_layers, projector_dim = "plain", None, None, 0, None
    if family == "fgaseg":
        decoder = "fast" if "head_auxi_0.weight" in head else "plain"
        fusion = "cat" if "conv_cat.weight" in head else "add"
        p2t_layers = _count(_sub(state, P2T_PREFIX), r"cross_atten_text\.(\d+)\.")
        lcs_out, lcs_in = _shape(head, "Local_align.txt.weight", HEAD_PREFIX)
        kernel_size = math.isqrt(max(lcs_out - 1, 0) // max(lcs_in, 1))
        if kernel_size < 1 or kernel_size * kernel_size * lcs_in + 1 != lcs_out:
            raise WeightsError(
                f"official checkpoint's {HEAD_PREFIX}Local_align.txt has {lcs_out} outputs for "
                f"{lcs_in} inputs, which is no square kernel"
            )
        projector_dim = _shape(state, PROJECTOR_PREFIX + "vis.4.weight")[0]
    return OfficialArchitecture(
        family=family,
        clip_name=clip_name,
        clip_config=clip_config,
        clip_resolution=clip_resolution,
        guidance_layers=guidance_layers,
        decoder=decoder,
        fusion=fusion,
        p2t_layers=p2t_layers,
        kernel_size=kernel_size,
        prompt_channels=prompt_channels,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        appearance_guidance_dim=guidance[1],
        appearance_guidance_proj_dim=guidance[0],
        text_guidance_dim=text_guidance[1],
        text_guidance_proj_dim=text_guidance[0],
        decoder_dims=(int(decoder_dims[0]), int(decoder_dims[1])),
        decoder_guidance_dims=(dec_guidance[0][1], dec_guidance[1][1]),
        decoder_guidance_proj_dims=(dec_guidance[0][0], dec_guidance[1][0]),
        feature_resolution=feature_resolution,
        window_size=window_size,
        pad_len=pad_len,
        projector_dim=projector_dim,
    )
