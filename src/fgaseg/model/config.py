"""`FGASegConfig`: every hyper-parameter of FGAseg (and of the CAT-Seg baseline), with presets.

Defaults reproduce the official FGA-seg ``vitb_384_fast_cat.yaml``. The four switches
``use_p2tformer``, ``use_t2p_loss``, ``use_gcs`` and ``use_lcs`` turn the paper's components on
and off; with all four off (and ``decoder_mode="plain"``) the model is CAT-Seg. See
docs/model.md for what each switch means exactly.
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from fgaseg.errors import ConfigError

SINGLE_TEMPLATE = ("A photo of a {} in the scene",)


def _pair(value: Union[int, Tuple[int, int], list]) -> Tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


@dataclass
class FGASegConfig:
    """All hyper-parameters of an FGASeg model (names follow the official config keys)."""

    # --- CLIP backbone -------------------------------------------------------------------
    clip: Any = "ViT-B/16"  # a name known to fgaseg.clip.build_clip, or a CLIPConfig
    clip_config: Optional[Dict[str, Any]] = None  # a CLIPConfig as dict; overrides `clip`
    image_size: Union[int, Tuple[int, int]] = 384  # CLIP input resolution (official 384 / 336)
    guidance_layers: Tuple[int, int] = (3, 7)  # 0-based CLIP blocks feeding the decoder
    clip_finetune: str = "attention"  # "attention" (q/v + position), "frozen" or "full"
    prompt_templates: Tuple[str, ...] = SINGLE_TEMPLATE

    # --- the paper's four switches -------------------------------------------------------
    use_p2tformer: bool = True
    use_t2p_loss: bool = True
    use_gcs: bool = True
    use_lcs: bool = True
    decoder_mode: str = "fast"  # "fast" (aux heads + TopK) or "plain"
    fusion: str = "cat"  # "cat" (concat + Linear) or "add"
    topk: Optional[int] = 16  # TopK class pruning at inference (fast mode); None = full

    # --- P2Tformer, alignment head, LCS --------------------------------------------------
    p2t_layers: int = 1
    p2t_heads: int = 8
    p2t_gamma_init: float = 0.1
    align_kernel_size: int = 3
    lcs_kernel_size: int = 3

    # --- cost aggregation ----------------------------------------------------------------
    hidden_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    window_size: int = 12
    pooling_size: Tuple[int, int] = (2, 2)  # class-aggregation pooling while training
    eval_pooling_size: Tuple[int, int] = (1, 1)  # ... and at inference (official eval.sh)
    pad_len: int = 256  # class-sequence length; > pad_len classes are pre-selected
    attention_type: str = "linear"
    text_guidance_proj_dim: int = 128
    appearance_guidance_proj_dim: int = 128

    # --- upsampling decoder --------------------------------------------------------------
    decoder_dims: Tuple[int, int] = (64, 32)
    decoder_guidance_dims: Tuple[int, int] = (256, 128)  # upsample1 / upsample2 out channels
    decoder_guidance_proj_dims: Tuple[int, int] = (32, 16)

    # --- losses --------------------------------------------------------------------------
    aux_loss_weights: Tuple[float, float, float] = (0.2, 1.0, 1.0)  # official: 0.2*aux0 + aux1 + aux2
    lambda_align: float = 0.02  # T2Ploss weight

    # --- inference -----------------------------------------------------------------------
    sliding_window_size: Optional[int] = 384  # crop side; None -> CLIP image size
    sliding_overlap: float = 0.333
    sliding_resize: Optional[int] = 640  # image resized to this square; None -> window + stride
    chunk_size: Optional[int] = None  # classes per chunk at inference; None -> automatic
    pruned_logit: float = -100.0  # logit given to classes removed by pre-selection / TopK

    extra: Dict[str, Any] = field(default_factory=dict)  # free-form notes (not used by the model)

    def __post_init__(self) -> None:
        check_field_types(self)
        if not isinstance(self.clip, str):  # a CLIPConfig: keep it as a plain dict
            if not hasattr(self.clip, "to_dict"):
                raise ConfigError(f"clip must be a model name or a CLIPConfig, not {type(self.clip).__name__}")
            self.clip_config = self.clip.to_dict()
            self.clip = "custom"
        self.image_size = _pair(self.image_size)
        self.guidance_layers = tuple(int(i) for i in self.guidance_layers)
        self.prompt_templates = tuple(self.prompt_templates)
        self.pooling_size = _pair(self.pooling_size)
        self.eval_pooling_size = _pair(self.eval_pooling_size)
        self.decoder_dims = tuple(int(d) for d in self.decoder_dims)
        self.decoder_guidance_dims = tuple(int(d) for d in self.decoder_guidance_dims)
        self.decoder_guidance_proj_dims = tuple(int(d) for d in self.decoder_guidance_proj_dims)
        self.aux_loss_weights = tuple(float(w) for w in self.aux_loss_weights)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(self.clip_finetune in ("attention", "frozen", "full"),
             f"clip_finetune must be 'attention', 'frozen' or 'full', not {self.clip_finetune!r}")
        need(self.decoder_mode in ("fast", "plain"),
             f"decoder_mode must be 'fast' or 'plain', not {self.decoder_mode!r}")
        need(self.fusion in ("cat", "add"), f"fusion must be 'cat' or 'add', not {self.fusion!r}")
        need(self.attention_type == "linear",
             f"attention_type {self.attention_type!r} is not supported (only 'linear')")
        need(len(self.guidance_layers) == 2, "guidance_layers needs exactly two CLIP block indices")
        need(len(self.prompt_templates) >= 1 and all("{}" in t for t in self.prompt_templates),
             "prompt_templates must be a non-empty list of strings containing '{}'")
        need(self.topk is None or int(self.topk) >= 0, "topk must be None or >= 0")
        need(self.hidden_dim % self.num_heads == 0, "hidden_dim must be divisible by num_heads")
        need(self.hidden_dim % 2 == 0, "hidden_dim must be even")
        need(len(self.decoder_dims) == 2 and len(self.decoder_guidance_dims) == 2
             and len(self.decoder_guidance_proj_dims) == 2, "decoder dims must have two entries")
        need(all(d >= 16 and d % 16 == 0 for d in self.decoder_dims),
             "decoder_dims must be multiples of 16 (GroupNorm with channels // 16 groups)")
        need(not self.use_lcs or self.decoder_dims[0] % 16 == 0, "decoder_dims[0] must be a multiple of 16")
        need(all(g > 0 for g in self.decoder_guidance_dims + self.decoder_guidance_proj_dims),
             "decoder guidance dims must be positive")
        need(self.decoder_guidance_proj_dims[0] < self.hidden_dim
             and self.decoder_guidance_proj_dims[1] < self.decoder_dims[0],
             "decoder guidance projections must be narrower than the decoder inputs")
        need(self.window_size >= 1 and self.pad_len >= 0 and self.num_layers >= 0, "bad aggregation sizes")
        need(self.lcs_kernel_size % 2 == 1 and self.align_kernel_size % 2 == 1, "kernel sizes must be odd")
        need(0.0 <= self.sliding_overlap < 1.0, "sliding_overlap must be in [0, 1)")
        need(self.chunk_size is None or self.chunk_size >= 1, "chunk_size must be None or >= 1")

    # ------------------------------------------------------------------ helpers
    @property
    def num_templates(self) -> int:
        return len(self.prompt_templates)

    def clip_cfg(self):
        """The CLIPConfig this model's backbone uses."""
        from fgaseg.clip.config import CLIPConfig, get_config

        if self.clip_config is not None:
            return CLIPConfig.from_dict(dict(self.clip_config))
        return get_config(self.clip)

    def feature_resolution(self) -> Tuple[int, int]:
        """Token grid (h, w) of the CLIP image encoder at ``image_size``."""
        patch = self.clip_cfg().vision_patch_size
        h, w = self.image_size
        if h % patch or w % patch:
            raise ConfigError(f"image_size {self.image_size} is not divisible by the patch size {patch}")
        return (h // patch, w // patch)

    def replace(self, **changes: Any) -> "FGASegConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "FGASegConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"an FGASeg config must be a mapping, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown FGASeg config keys: {', '.join(unknown)}")
        return cls(**values)


# ---------------------------------------------------------------------------- type checks
def _matches(value: Any, hint: Any) -> bool:
    """Whether a (JSON / YAML) value fits a type hint of FGASegConfig (lists for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or origin in (dict, Dict):
        return True
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, Tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}s"
        return f"a list of {len(args)} {_describe(args[0])}s"
    return {int: "integer", float: "number", bool: "true/false", str: "string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def check_field_types(config: Any) -> None:
    """ConfigError naming the first field whose value has the wrong type (e.g. a string for
    ``hidden_dim``), instead of a TypeError deep inside validation or the model."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "clip" and not isinstance(value, str):
            continue  # a CLIPConfig object, converted in __post_init__
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"'{f.name}' expects {_describe(hints[f.name])}, got {value!r}")


# ---------------------------------------------------------------------------- presets
_CATSEG_OFF = dict(use_p2tformer=False, use_t2p_loss=False, use_gcs=False, use_lcs=False,
                   decoder_mode="plain", topk=None)


def fgaseg_vitb16_384(**overrides: Any) -> FGASegConfig:
    """Official FGA-seg ``vitb_384_fast_cat``: CLIP ViT-B/16 at 384², blocks 3/7 as guidance."""
    return FGASegConfig(**overrides)


def fgaseg_vitl14_336(**overrides: Any) -> FGASegConfig:
    """Official FGA-seg ``vitl_336_fast_cat``: CLIP ViT-L/14@336px, blocks 7/15 as guidance."""
    base = dict(clip="ViT-L/14@336px", image_size=336, guidance_layers=(7, 15))
    base.update(overrides)
    return FGASegConfig(**base)


def catseg_vitb16_384(**overrides: Any) -> FGASegConfig:
    """CAT-Seg ViT-B/16 (``vitb_384.yaml``): all four FGAseg switches off, plain decoder."""
    base = dict(_CATSEG_OFF)
    base.update(overrides)
    return FGASegConfig(**base)


def catseg_vitl14_336(**overrides: Any) -> FGASegConfig:
    """CAT-Seg ViT-L/14@336px (``vitl_336.yaml``)."""
    base = dict(_CATSEG_OFF, clip="ViT-L/14@336px", image_size=336, guidance_layers=(7, 15))
    base.update(overrides)
    return FGASegConfig(**base)


def fgaseg_tiny(**overrides: Any) -> FGASegConfig:
    """A small FGAseg on the ``tiny`` CLIP (64² input, 8x8 tokens) for tests and synthetic runs.

    Window 4 on the 8x8 grid exercises shifted windows; pad_len 32 exercises both class padding
    (T < 32) and the class pre-selection (T > 32).
    """
    base = dict(
        clip="tiny", image_size=64, guidance_layers=(1, 2), p2t_heads=4,
        hidden_dim=32, num_layers=2, num_heads=2, window_size=4, pad_len=32,
        text_guidance_proj_dim=32, appearance_guidance_proj_dim=32,
        decoder_dims=(16, 16), decoder_guidance_dims=(32, 16), decoder_guidance_proj_dims=(8, 8),
        sliding_window_size=64, sliding_resize=96, sliding_overlap=0.5,
    )
    base.update(overrides)
    return FGASegConfig(**base)


def catseg_tiny(**overrides: Any) -> FGASegConfig:
    """The CAT-Seg baseline on the tiny CLIP."""
    base = dict(_CATSEG_OFF)
    base.update(overrides)
    return fgaseg_tiny(**base)


PRESETS = {
    "fgaseg_vitb16_384": fgaseg_vitb16_384,
    "fgaseg_vitl14_336": fgaseg_vitl14_336,
    "catseg_vitb16_384": catseg_vitb16_384,
    "catseg_vitl14_336": catseg_vitl14_336,
    "fgaseg_tiny": fgaseg_tiny,
    "catseg_tiny": catseg_tiny,
}


def get_preset(name: str, **overrides: Any) -> FGASegConfig:
    """Build a named preset; raises ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown FGASeg preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)
