"""Build the model a training config asks for (FGASeg from a preset, pretrained CLIP inside)."""

from __future__ import annotations

from torch import nn

from fgaseg.train.config import ModelConfig


def build_model(config: ModelConfig) -> nn.Module:
    """``FGASeg(get_preset(config.preset, **config.overrides), clip=...)``.

    ``clip_weights`` (an OpenAI / open_clip / HF file, folder or hub id, see
    ``fgaseg.clip.load_clip``) gives the starting CLIP; without it CLIP is random (only useful for
    tests and the synthetic benchmark). ``init_weights`` loads a whole FGASeg instead
    (``FGASeg.from_pretrained``), e.g. to fine-tune a released checkpoint.
    """
    from fgaseg.model import FGASeg
    from fgaseg.model.config import get_preset

    if config.init_weights:
        return FGASeg.from_pretrained(config.init_weights)
    model_config = get_preset(config.preset, **dict(config.overrides))
    clip = None
    if config.clip_weights:
        from fgaseg.clip.loading import load_clip

        clip = load_clip(config.clip_weights)
    return FGASeg(model_config, clip=clip)
