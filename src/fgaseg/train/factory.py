"""Build the model a training config asks for (FGASeg from a preset, pretrained CLIP inside)."""

from __future__ import annotations

from torch import nn

from fgaseg.errors import ConfigError
from fgaseg.train.config import ModelConfig


def build_model(config: ModelConfig) -> nn.Module:
    """``FGASeg(get_preset(config.preset, **config.overrides), clip=...)``.

    ``clip_weights`` (an OpenAI / open_clip / HF file, folder or hub id, see
    ``fgaseg.clip.load_clip``) gives the starting CLIP; without it CLIP is random (only useful for
    tests and the synthetic benchmark). ``init_weights`` loads a whole FGASeg instead
    (``FGASeg.from_pretrained``), e.g. to fine-tune a released checkpoint.
    """
    from fgaseg.model import FGASeg

    if config.init_weights:
        return FGASeg.from_pretrained(config.init_weights)
    model_config = model_config_of(config)
    clip = None
    if config.clip_weights:
        from fgaseg.clip.loading import load_clip

        clip = load_clip(config.clip_weights)
    return FGASeg(model_config, clip=clip)


def model_config_of(config: ModelConfig):
    """The FGASegConfig of ``model.preset`` with ``model.overrides``; ConfigError names the
    option (``model.overrides.<key>``) when an override is unknown or of the wrong type."""
    import dataclasses

    from fgaseg.model.config import FGASegConfig, get_preset

    overrides = config.overrides
    if not isinstance(overrides, dict):
        raise ConfigError(f"model.overrides must be a mapping of FGASeg config keys, got "
                          f"{overrides!r}")
    known = {f.name for f in dataclasses.fields(FGASegConfig)}
    unknown = sorted(str(k) for k in overrides if k not in known)
    if unknown:
        raise ConfigError(f"model.overrides: unknown FGASeg config key(s): {', '.join(unknown)}")
    get_preset(config.preset)  # an unknown preset is its own error
    try:
        return get_preset(config.preset, **overrides)
    except ConfigError as exc:
        raise ConfigError(f"model.overrides: {exc}") from None
