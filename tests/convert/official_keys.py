"""State-dict key names and shapes of the official CAT-Seg / FGA-seg detectron2 checkpoints.

Derived by reading the official code (cvlab-kaist/CAT-Seg, LiBingyu01/FGA-seg) and written
down here as architecture rules; nothing here imports or runs the official code.

What a detectron2 ``model_final.pth`` holds (``DefaultTrainer`` + ``DetectionCheckpointer``):
``{"model": state_dict, "trainer": {...optimizer/scheduler/hooks...}, "iteration": N}``
(published files may keep only ``model``). The ``model`` dict of the meta-architecture
(``CATSeg`` / ``FGASeg``; ``backbone`` is None, the ``pixel_mean``/``clip_pixel_*`` buffers are
registered with ``persistent=False``) contains:

- ``sem_seg_head.predictor.clip_model.*``: OpenAI CLIP (``third_party/model_vpt.py``), float32
  (``clip_model.float()``), with each ``nn.MultiheadAttention`` replaced by ``Attention`` that
  splits ``in_proj_weight`` into ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` and sets
  ``in_proj_weight = None`` (so it is absent); ``in_proj_bias`` (3W) stays packed. The causal
  ``attn_mask`` of the text tower is a plain attribute (not a buffer), so it is absent.
  ``prompt_tokens`` exist only with ``PROMPT_LENGTH > 0``; every released config has 0.
  The image positional embedding keeps the OpenAI size (197 for B/16 at 224px, 577 for
  L/14@336) and is bicubically resized at run time.
- ``sem_seg_head.predictor.transformer.*``: CAT-Seg ``Aggregator`` or FGA-seg
  ``Decoder_fast`` (``DECODER_MOD: fast``) / ``Decoder`` (``no_fast``). Swin ``block_2``
  (shifted) registers its ``attn_mask`` (num_windows, ws*ws, ws*ws) as a persistent buffer;
  ``block_1``'s is None (absent). ``SwinTransformerBlockWrapper`` is built with ``pad_len=0``
  (no padding parameters); ``ClassTransformerLayer`` has ``padding_tokens`` and
  ``padding_guidance`` (pad_len 256).
- FGA-seg only: ``sem_seg_head.predictor.DCDT.*`` (P2Tformer: ``cross_atten_text.{i}`` with a
  plain ``nn.MultiheadAttention`` (packed ``in_proj_weight``), ``norm``, ``MLP``;
  ``gamma_text``) and ``sem_seg_head.predictor.proj.*`` (Projector with two BatchNorms, whose
  ``running_mean``/``running_var``/``num_batches_tracked`` are stored).
- ``upsample1.*`` / ``upsample2.*``: ConvTranspose2d(vision width -> 256, k2 s2) and (-> 128, k4 s4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Tuple

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class OfficialVariant:
    """One official configuration (the YAML switches that change the state dict)."""

    family: str = "fgaseg"  # "catseg" | "fgaseg"
    clip: str = "ViT-B/16"  # "ViT-B/16" | "ViT-L/14@336px"
    decoder: str = "fast"  # FGA-seg DECODER_MOD: "fast" | "plain" (no_fast)
    fusion: str = "cat"  # FGA-seg FUSION_MOD: "cat" | "add"
    p2t_layers: int = 1  # FGA-seg P2T_LAYER
    kernel_size: int = 3  # FGA-seg KERNEL_SIZE (LCS)
    prompt_channels: int = 1  # len(prompt templates); 1 for PROMPT_ENSEMBLE_TYPE "single"
    num_layers: int = 2  # NUM_LAYERS (aggregation layers)
    hidden_dim: int = 128
    feature_resolution: int = 24
    window_size: int = 12


VARIANTS: Dict[str, OfficialVariant] = {
    "catseg_vitb16": OfficialVariant(family="catseg", clip="ViT-B/16"),
    "catseg_vitl14_336": OfficialVariant(family="catseg", clip="ViT-L/14@336px"),
    "fgaseg_vitb16_fast_cat": OfficialVariant(),
    "fgaseg_vitb16_fast_add": OfficialVariant(fusion="add"),
    "fgaseg_vitb16_plain_cat": OfficialVariant(decoder="plain"),
    "fgaseg_vitb16_plain_add": OfficialVariant(decoder="plain", fusion="add"),
    "fgaseg_vitb16_fast_cat_p2t_2": OfficialVariant(p2t_layers=2),
    "fgaseg_vitb16_fast_cat_p2t_4": OfficialVariant(p2t_layers=4),
    "fgaseg_vitb16_fast_cat_p2t_6": OfficialVariant(p2t_layers=6),
    "fgaseg_vitb16_fast_cat_kernel_1": OfficialVariant(kernel_size=1),
    "fgaseg_vitb16_fast_cat_kernel_5": OfficialVariant(kernel_size=5),
    "fgaseg_vitl14_336_fast_cat": OfficialVariant(clip="ViT-L/14@336px"),
}

# OpenAI CLIP geometry: (embed_dim, image_resolution, vision_layers, vision_width, patch,
#                        text_width, text_layers)
_CLIP_GEOMETRY = {
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}
# CLIP blocks whose outputs feed upsample1/upsample2 (not a state-dict matter, kept for tests)
GUIDANCE_LAYERS = {"ViT-B/16": (3, 7), "ViT-L/14@336px": (7, 15)}

PREDICTOR = "sem_seg_head.predictor."


def _linear(spec: dict, name: str, out_f: int, in_f: int, bias: bool = True) -> None:
    spec[f"{name}.weight"] = (out_f, in_f)
    if bias:
        spec[f"{name}.bias"] = (out_f,)


def _conv(spec: dict, name: str, out_c: int, in_c: int, k: int, bias: bool = True) -> None:
    spec[f"{name}.weight"] = (out_c, in_c, k, k)
    if bias:
        spec[f"{name}.bias"] = (out_c,)


def _conv_transpose(spec: dict, name: str, in_c: int, out_c: int, k: int) -> None:
    spec[f"{name}.weight"] = (in_c, out_c, k, k)  # ConvTranspose2d stores (in, out, k, k)
    spec[f"{name}.bias"] = (out_c,)


def _norm(spec: dict, name: str, dim: int) -> None:
    spec[f"{name}.weight"] = (dim,)
    spec[f"{name}.bias"] = (dim,)


def _batch_norm(spec: dict, name: str, dim: int) -> None:
    _norm(spec, name, dim)
    spec[f"{name}.running_mean"] = (dim,)
    spec[f"{name}.running_var"] = (dim,)
    spec[f"{name}.num_batches_tracked"] = ()


def _clip_resblock(spec: dict, name: str, width: int) -> None:
    for proj in ("q", "k", "v"):
        spec[f"{name}.attn.{proj}_proj_weight"] = (width, width)
    spec[f"{name}.attn.in_proj_bias"] = (3 * width,)
    _linear(spec, f"{name}.attn.out_proj", width, width)
    _norm(spec, f"{name}.ln_1", width)
    _linear(spec, f"{name}.mlp.c_fc", 4 * width, width)
    _linear(spec, f"{name}.mlp.c_proj", width, 4 * width)
    _norm(spec, f"{name}.ln_2", width)


def clip_spec(clip: str) -> Dict[str, Shape]:
    """Keys of ``clip_model`` (relative), OpenAI names with q/k/v-split attention."""
    embed, resolution, v_layers, v_width, patch, t_width, t_layers = _CLIP_GEOMETRY[clip]
    spec: Dict[str, Shape] = {}
    grid = resolution // patch
    spec["positional_embedding"] = (77, t_width)
    spec["text_projection"] = (t_width, embed)
    spec["logit_scale"] = ()
    spec["visual.class_embedding"] = (v_width,)
    spec["visual.positional_embedding"] = (grid * grid + 1, v_width)
    spec["visual.proj"] = (v_width, embed)
    spec["visual.conv1.weight"] = (v_width, 3, patch, patch)
    _norm(spec, "visual.ln_pre", v_width)
    for i in range(v_layers):
        _clip_resblock(spec, f"visual.transformer.resblocks.{i}", v_width)
    _norm(spec, "visual.ln_post", v_width)
    for i in range(t_layers):
        _clip_resblock(spec, f"transformer.resblocks.{i}", t_width)
    spec["token_embedding.weight"] = (49408, t_width)
    _norm(spec, "ln_final", t_width)
    return spec


def _swin_block(spec: dict, name: str, dim: int, guidance: int, shifted: bool, v: OfficialVariant) -> None:
    _norm(spec, f"{name}.norm1", dim)
    _linear(spec, f"{name}.attn.q", dim, dim + guidance)
    _linear(spec, f"{name}.attn.k", dim, dim + guidance)
    _linear(spec, f"{name}.attn.v", dim, dim)
    _linear(spec, f"{name}.attn.proj", dim, dim)
    _norm(spec, f"{name}.norm2", dim)
    _linear(spec, f"{name}.mlp.fc1", 4 * dim, dim)
    _linear(spec, f"{name}.mlp.fc2", dim, 4 * dim)
    if shifted:
        windows = (v.feature_resolution // v.window_size) ** 2
        area = v.window_size * v.window_size
        spec[f"{name}.attn_mask"] = (windows, area, area)


def _aggregation_layer(spec: dict, name: str, v: OfficialVariant) -> None:
    hidden = v.hidden_dim
    guidance = 128  # APPEARANCE_GUIDANCE_PROJ_DIM == TEXT_GUIDANCE_PROJ_DIM == 128
    _swin_block(spec, f"{name}.swin_block.block_1", hidden, guidance, False, v)
    _swin_block(spec, f"{name}.swin_block.block_2", hidden, guidance, True, v)
    _norm(spec, f"{name}.swin_block.guidance_norm", guidance)
    attn = f"{name}.attention"
    _linear(spec, f"{attn}.attention.q", hidden, hidden + guidance)
    _linear(spec, f"{attn}.attention.k", hidden, hidden + guidance)
    _linear(spec, f"{attn}.attention.v", hidden, hidden)
    _linear(spec, f"{attn}.MLP.0", 4 * hidden, hidden)
    _linear(spec, f"{attn}.MLP.2", hidden, 4 * hidden)
    _norm(spec, f"{attn}.norm1", hidden)
    _norm(spec, f"{attn}.norm2", hidden)
    spec[f"{attn}.padding_tokens"] = (1, 1, hidden)
    spec[f"{attn}.padding_guidance"] = (1, 1, guidance)


def _double_conv(spec: dict, name: str, in_c: int, out_c: int) -> None:
    _conv(spec, f"{name}.double_conv.0", out_c, in_c, 3, bias=False)
    _norm(spec, f"{name}.double_conv.1", out_c)  # GroupNorm
    _conv(spec, f"{name}.double_conv.3", out_c, out_c, 3, bias=False)
    _norm(spec, f"{name}.double_conv.4", out_c)


def _up(spec: dict, name: str, in_c: int, out_c: int, guidance: int) -> None:
    _conv_transpose(spec, f"{name}.up", in_c, in_c - guidance, 2)
    _double_conv(spec, f"{name}.conv", in_c, out_c)


def head_spec(v: OfficialVariant) -> Dict[str, Shape]:
    """Keys of ``predictor.transformer`` (Aggregator / Decoder_fast / Decoder), relative."""
    embed = _CLIP_GEOMETRY[v.clip][0]
    hidden = v.hidden_dim
    spec: Dict[str, Shape] = {}
    for i in range(v.num_layers):
        _aggregation_layer(spec, f"layers.{i}", v)
    _conv(spec, "conv1", hidden, v.prompt_channels, 7)
    if v.family == "fgaseg":
        _conv(spec, "conv2", hidden, v.prompt_channels, 7)
        if v.fusion == "cat":
            _linear(spec, "conv_cat", hidden, 2 * hidden)
            _linear(spec, "conv_cat_decoder_1", hidden, 2 * hidden)
            _linear(spec, "conv_cat_decoder_2", hidden // 2, hidden)
        _conv_transpose(spec, "corr_local_decoder_projection.0", hidden, hidden // 2, 2)
        _double_conv(spec, "corr_local_decoder_projection.1", hidden // 2, hidden // 2)
    _conv(spec, "guidance_projection.0", 128, embed, 3)  # APPEARANCE_GUIDANCE_DIM = CLIP embed dim
    _linear(spec, "text_guidance_projection.0", 128, embed)
    _conv(spec, "decoder_guidance_projection.0.0", 32, 256, 3)
    _conv(spec, "decoder_guidance_projection.1.0", 16, 128, 3)
    _up(spec, "decoder1", hidden, 64, 32)
    _up(spec, "decoder2", 64, 32, 16)
    _conv(spec, "head", 1, 32, 3)
    if v.family == "fgaseg":
        if v.decoder == "fast":
            _conv(spec, "head_auxi_0", 1, hidden, 3)
            _conv(spec, "head_auxi_1", 1, hidden, 3)
            _conv(spec, "head_auxi_2", 1, hidden // 2, 3)
        # Local_align(word_dim=embed, vision_dim=embed, kernel_size)
        _linear(spec, "Local_align.txt", embed * v.kernel_size**2 + 1, embed)
    return spec


def p2tformer_spec(v: OfficialVariant) -> Dict[str, Shape]:
    """Keys of ``predictor.DCDT`` (P2Tformer(d_model=embed, nhead=8, N=P2T_LAYER)), relative."""
    d = _CLIP_GEOMETRY[v.clip][0]
    spec: Dict[str, Shape] = {"gamma_text": (d,)}
    for i in range(v.p2t_layers):
        name = f"cross_atten_text.{i}"
        spec[f"{name}.multihead_attn.in_proj_weight"] = (3 * d, d)
        spec[f"{name}.multihead_attn.in_proj_bias"] = (3 * d,)
        _linear(spec, f"{name}.multihead_attn.out_proj", d, d)
        _norm(spec, f"{name}.norm", d)
        _linear(spec, f"{name}.MLP", d, d)
    return spec


def projector_spec(v: OfficialVariant) -> Dict[str, Shape]:
    """Keys of ``predictor.proj`` (Projector(word_dim=embed, vision_dim=embed // 2)), relative."""
    word = _CLIP_GEOMETRY[v.clip][0]
    vision = word // 2
    spec: Dict[str, Shape] = {}
    _conv(spec, "vis.1.0", 2 * vision, 2 * vision, 3, bias=False)
    _batch_norm(spec, "vis.1.1", 2 * vision)
    _conv(spec, "vis.3.0", vision, 2 * vision, 3, bias=False)
    _batch_norm(spec, "vis.3.1", vision)
    _conv(spec, "vis.4", vision, vision, 1)
    _linear(spec, "txt", vision * 3 * 3 + 1, word)
    return spec


def official_state_dict_spec(variant: "str | OfficialVariant") -> Dict[str, Shape]:
    """Every key of the official ``model`` dict with its shape, for a named or given variant."""
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    vision_width = _CLIP_GEOMETRY[v.clip][3]
    spec: Dict[str, Shape] = {}
    for key, shape in clip_spec(v.clip).items():
        spec[f"{PREDICTOR}clip_model.{key}"] = shape
    for key, shape in head_spec(v).items():
        spec[f"{PREDICTOR}transformer.{key}"] = shape
    if v.family == "fgaseg":
        for key, shape in p2tformer_spec(v).items():
            spec[f"{PREDICTOR}DCDT.{key}"] = shape
        for key, shape in projector_spec(v).items():
            spec[f"{PREDICTOR}proj.{key}"] = shape
    _conv_transpose(spec, "upsample1", vision_width, 256, 2)
    _conv_transpose(spec, "upsample2", vision_width, 128, 4)
    return spec


def variant(name: str, **changes) -> OfficialVariant:
    """A named variant with some fields changed."""
    return replace(VARIANTS[name], **changes)


# ----------------------------------------------------------------------------- test state dicts
def swin_shift_mask(resolution: int, window: int, shift: int):
    """The official shifted-window mask (num_windows, window², window²): 0 / -100.

    Regions: rows and columns are each split into [0, R-window), [R-window, R-shift),
    [R-shift, R); two tokens of a window may attend to each other only in the same region.
    """
    import torch

    region = torch.zeros(resolution, dtype=torch.long)
    region[resolution - window:resolution - shift] = 1
    region[resolution - shift:] = 2
    labels = region[:, None] * 3 + region[None, :]  # (R, R)
    n = resolution // window
    windows = labels.view(n, window, n, window).permute(0, 2, 1, 3).reshape(n * n, window * window)
    same = windows[:, :, None] == windows[:, None, :]
    return torch.where(same, 0.0, -100.0)


def make_official_state_dict(variant_or_name, *, seed: int = 0, std: float = 0.02):
    """A state dict with exactly the official names and shapes (random values, valid buffers).

    To stay cheap for the ~150M (ViT-B) / ~430M (ViT-L) CLIP values, every tensor of rank >= 2
    is a read-only broadcast view ``(1, *shape[1:]) -> shape`` of a small random pool (its rows
    repeat; the offset into the pool differs from key to key). Shapes are what the converter
    checks; ``load_state_dict`` copies such views like any tensor, and ``torch.save`` stores
    only the pool.
    """
    import torch

    v = VARIANTS[variant_or_name] if isinstance(variant_or_name, str) else variant_or_name
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 16, generator=generator) * std
    state = {}
    for index, (key, shape) in enumerate(official_state_dict_spec(v).items()):
        inner = 1
        for s in shape[1:]:
            inner *= s
        offset = (index * 7919) % (pool.numel() - max(inner, shape[0] if shape else 1))
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000 + index, dtype=torch.long)
        elif key.endswith("attn_mask"):
            state[key] = swin_shift_mask(v.feature_resolution, v.window_size, v.window_size // 2)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) >= 2:
            state[key] = pool[offset:offset + inner].view(1, *shape[1:]).expand(shape)
        elif len(shape) == 1:
            state[key] = pool[offset:offset + shape[0]].clone()
        else:
            state[key] = pool[offset].clone()
        if key.endswith(("ln_1.weight", "ln_2.weight", "norm.weight", "norm1.weight", "norm2.weight",
                         "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            state[key] = state[key] + 1.0
    return state
