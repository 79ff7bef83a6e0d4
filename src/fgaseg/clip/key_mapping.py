"""Key mapping between checkpoint layouts and ours.

Ours = OpenAI's names with each attention's packed ``in_proj_weight`` split into
``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` (CAT-Seg layout). Also handles
Hugging Face transformers' ``CLIPModel`` names.
"""

from __future__ import annotations

import re
from typing import Dict

import torch

from fgaseg.clip.config import CLIPConfig

StateDict = Dict[str, torch.Tensor]

# our per-block names -> transformers' per-layer names (q/k/v handled separately)
_BLOCK_TO_HF = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
_TOWER_TO_HF = {"visual.transformer.resblocks": "vision_model.encoder.layers",
                "transformer.resblocks": "text_model.encoder.layers"}
_PLAIN_TO_HF = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED_TO_HF = {"visual.proj": "visual_projection.weight",
                     "text_projection": "text_projection.weight"}
_BLOCK_KEY = re.compile(r"^(visual\.transformer\.resblocks|transformer\.resblocks)\.(\d+)\.(.+)$")
_HF_BLOCK_KEY = re.compile(r"^(vision_model\.encoder\.layers|text_model\.encoder\.layers)\.(\d+)\.(.+)$")
# buffers transformers keeps in older versions; not weights
HF_IGNORED = ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")


def split_packed_attention(state: StateDict) -> StateDict:
    """OpenAI/open_clip ``attn.in_proj_weight (3W, W)`` -> our q/k/v weights (others untouched)."""
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith("attn.in_proj_weight"):
            prefix = key[: -len("in_proj_weight")]
            q, k, v = value.chunk(3, dim=0)
            out[prefix + "q_proj_weight"] = q.contiguous()
            out[prefix + "k_proj_weight"] = k.contiguous()
            out[prefix + "v_proj_weight"] = v.contiguous()
        else:
            out[key] = value
    return out


def pack_attention(state: StateDict) -> StateDict:
    """Our q/k/v weights -> OpenAI's packed ``attn.in_proj_weight`` (for writing OpenAI files)."""
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith("attn.q_proj_weight"):
            prefix = key[: -len("q_proj_weight")]
            out[prefix + "in_proj_weight"] = torch.cat(
                [value, state[prefix + "k_proj_weight"], state[prefix + "v_proj_weight"]], dim=0
            )
        elif not key.endswith(("attn.k_proj_weight", "attn.v_proj_weight")):
            out[key] = value
    return out


def to_hf(state: StateDict) -> StateDict:
    """Our state dict -> transformers ``CLIPModel`` names."""
    out: StateDict = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            tower, index, rest = match.groups()
            prefix = f"{_TOWER_TO_HF[tower]}.{index}."
            if rest == "attn.in_proj_bias":
                for name, part in zip("qkv", value.chunk(3)):
                    out[f"{prefix}self_attn.{name}_proj.bias"] = part.clone()
            elif rest in ("attn.q_proj_weight", "attn.k_proj_weight", "attn.v_proj_weight"):
                out[f"{prefix}self_attn.{rest[5]}_proj.weight"] = value.clone()
            else:
                module, param = rest.rsplit(".", 1)
                out[f"{prefix}{_BLOCK_TO_HF.get(module, module)}.{param}"] = value.clone()
        elif key in _PLAIN_TO_HF:
            out[_PLAIN_TO_HF[key]] = value.clone()
        elif key in _TRANSPOSED_TO_HF:
            out[_TRANSPOSED_TO_HF[key]] = value.t().contiguous()
        else:
            out[key] = value
    return out


def from_hf(state: StateDict) -> StateDict:
    """transformers ``CLIPModel`` names -> ours (unknown keys are kept, to be reported)."""
    plain = {hf: ours for ours, hf in _PLAIN_TO_HF.items()}
    transposed = {hf: ours for ours, hf in _TRANSPOSED_TO_HF.items()}
    towers = {hf: ours for ours, hf in _TOWER_TO_HF.items()}
    block = {hf: ours for ours, hf in _BLOCK_TO_HF.items()}
    out: StateDict = {}
    biases: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in HF_IGNORED:
            continue
        match = _HF_BLOCK_KEY.match(key)
        if match:
            tower, index, rest = match.groups()
            prefix = f"{towers[tower]}.{index}."
            attn = re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if attn:
                name, param = attn.groups()
                if param == "weight":
                    out[f"{prefix}attn.{name}_proj_weight"] = value
                else:
                    biases.setdefault(prefix, {})[name] = value
                continue
            module, param = rest.rsplit(".", 1)
            out[f"{prefix}{block.get(module, module)}.{param}"] = value
        elif key in plain:
            out[plain[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.t().contiguous()
        else:
            out[key] = value
    for prefix, parts in biases.items():
        if set(parts) == {"q", "k", "v"}:
            out[prefix + "attn.in_proj_bias"] = torch.cat([parts["q"], parts["k"], parts["v"]])
        else:  # leave the pieces so that the missing ones are reported
            for name, part in parts.items():
                out[f"{prefix}attn.{name}_proj.bias"] = part
    return out


def hf_config_dict(config: CLIPConfig) -> dict:
    """Keyword arguments for ``transformers.CLIPConfig`` describing the same model."""
    return {
        "projection_dim": config.embed_dim,
        "text_config": {
            "vocab_size": config.vocab_size,
            "hidden_size": config.transformer_width,
            "intermediate_size": 4 * config.transformer_width,
            "num_hidden_layers": config.transformer_layers,
            "num_attention_heads": config.transformer_heads,
            "max_position_embeddings": config.context_length,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
        "vision_config": {
            "hidden_size": config.vision_width,
            "intermediate_size": 4 * config.vision_width,
            "num_hidden_layers": config.vision_layers,
            "num_attention_heads": config.vision_heads,
            "image_size": config.image_resolution,
            "patch_size": config.vision_patch_size,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
    }


def is_hf_layout(state: StateDict) -> bool:
    return any(key.startswith(("vision_model.", "text_model.")) for key in state)


def to_ours(state: StateDict) -> StateDict:
    """Any supported layout (OpenAI, open_clip, CAT-Seg, transformers) -> ours."""
    if is_hf_layout(state):
        return from_hf(state)
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length",
                                                          "vocab_size")}
    return split_packed_attention(state)
