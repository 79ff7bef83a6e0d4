"""Convert official CAT-Seg / FGA-seg detectron2 checkpoints into fgaseg's names.

An official ``model_final.pth`` is ``{"model": state_dict, ...}`` (``trainer``, ``iteration``
and optimizer state are ignored). Its ``model`` dict is renamed with a prefix table
(``sem_seg_head.predictor.clip_model.`` -> ``clip.``, ``...transformer.`` -> ``head.``,
``...DCDT.`` -> ``p2tformer.``, ``...proj.`` -> ``alignment_head.``, ``upsample1/2.`` kept);
names inside these modules are the official ones. The conversion is strict: every official
tensor must land on a parameter or buffer of the model built from the inferred configuration,
with the same shape, and every parameter or buffer of that model must be provided.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from fgaseg.convert.architecture import (
    CLIP_PREFIX,
    HEAD_PREFIX,
    P2T_PREFIX,
    PREDICTOR,
    PROJECTOR_PREFIX,
    OfficialArchitecture,
    infer_architecture,
)
from fgaseg.convert.reading import peek_key_names, read_checkpoint_file
from fgaseg.errors import WeightsError

StateDict = Dict[str, torch.Tensor]
Source = Union[str, "os.PathLike[str]", Mapping[str, Any]]

# official prefix -> our prefix (inside the modules the official names are kept)
PREFIX_TABLE: Tuple[Tuple[str, str], ...] = (
    (CLIP_PREFIX, "clip."),
    (HEAD_PREFIX, "head."),
    (P2T_PREFIX, "p2tformer."),
    (PROJECTOR_PREFIX, "alignment_head."),
    ("upsample1.", "upsample1."),
    ("upsample2.", "upsample2."),
)
# renames inside our modules where fgaseg's name differs from the official one (ours -> ours)
INNER_RENAMES: Tuple[Tuple[str, str], ...] = ()

# key prefixes that identify an official checkpoint without unpickling it (Mask2Former-like
# detectron2 models also have ``sem_seg_head.predictor.*`` keys, but no CLIP there). FGA-seg
# dicts start with the P2Tformer, so in a numpy .pkl the CLIP keys may lie beyond the bytes read.
_MARKERS = (CLIP_PREFIX.encode(), P2T_PREFIX.encode())


# ----------------------------------------------------------------------------- recognising
def _model_dict(obj: Any) -> Optional[Mapping[str, Any]]:
    """The official ``model`` dict inside a loaded checkpoint object, or None."""
    if not isinstance(obj, Mapping):
        return None
    candidate = obj["model"] if "model" in obj else obj
    if not isinstance(candidate, Mapping) or not candidate:
        return None
    keys = [key for key in candidate if isinstance(key, str)]
    if any(key.startswith(CLIP_PREFIX) or key.startswith("module." + CLIP_PREFIX) for key in keys):
        return candidate
    return None


def is_official_checkpoint(source: Source) -> bool:
    """True for an official CAT-Seg / FGA-seg checkpoint (a loaded object or a file path).

    For a path only the key names are inspected (no tensors are loaded, nothing is unpickled).
    """
    if isinstance(source, Mapping):
        return _model_dict(source) is not None
    path = Path(source)
    if not path.is_file():
        return False
    names = peek_key_names(path)
    return any(marker in names for marker in _MARKERS)


# ----------------------------------------------------------------------------- renaming
def official_to_ours(name: str) -> Optional[str]:
    """Our state-dict name for an official key, or None for a key outside the prefix table."""
    for official, ours in PREFIX_TABLE:
        if name.startswith(official):
            renamed = ours + name[len(official):]
            for old, new in INNER_RENAMES:
                if renamed.startswith(old):
                    renamed = new + renamed[len(old):]
            return renamed
    return None


def ours_to_official(name: str) -> str:
    """The official key for one of our state-dict names (for error messages)."""
    for old, new in INNER_RENAMES:
        if name.startswith(new):
            name = old + name[len(new):]
    for official, ours in PREFIX_TABLE:
        if name.startswith(ours):
            return official + name[len(ours):]
    return name


def _strip_module_prefix(state: Mapping[str, Any]) -> Dict[str, Any]:
    keys = list(state)
    if keys and all(key.startswith("module.") for key in keys):
        return {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def _name_list(names: List[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ----------------------------------------------------------------------------- configuration
def config_from_architecture(arch: OfficialArchitecture):
    """The FGASegConfig that reproduces an official architecture."""
    from fgaseg.clip.config import get_config as get_clip_config
    from fgaseg.clip.templates import IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE
    from fgaseg.model.config import FGASegConfig

    if arch.prompt_channels == len(PROMPT_TEMPLATES_SINGLE):
        templates = tuple(PROMPT_TEMPLATES_SINGLE)
    elif arch.prompt_channels == len(IMAGENET_TEMPLATES):
        templates = tuple(IMAGENET_TEMPLATES)
    else:
        raise WeightsError(
            f"official checkpoint was trained with {arch.prompt_channels} prompt templates; only 1 "
            f"(PROMPT_ENSEMBLE_TYPE single) and {len(IMAGENET_TEMPLATES)} (imagenet) are supported"
        )
    if arch.appearance_guidance_dim != arch.clip_config.embed_dim or arch.text_guidance_dim != arch.clip_config.embed_dim:
        raise WeightsError(
            f"official checkpoint's guidance projections take {arch.appearance_guidance_dim}/"
            f"{arch.text_guidance_dim} channels, not the CLIP embedding size {arch.clip_config.embed_dim}"
        )
    grid = arch.clip_resolution // arch.clip_config.vision_patch_size
    if arch.feature_resolution != grid:
        raise WeightsError(
            f"official checkpoint's Swin mask is for a {arch.feature_resolution}x"
            f"{arch.feature_resolution} grid, but {arch.clip_name} at {arch.clip_resolution}px gives {grid}x{grid}"
        )
    fgaseg = arch.family == "fgaseg"
    named_clip = get_clip_config(arch.clip_name)
    return FGASegConfig(
        clip=arch.clip_name,
        # a checkpoint whose CLIP differs from the named one (e.g. a pre-resized positional
        # embedding) keeps its own geometry
        clip_config=None if arch.clip_config.to_dict() == named_clip.to_dict() else arch.clip_config.to_dict(),
        image_size=arch.clip_resolution,
        guidance_layers=arch.guidance_layers,
        prompt_templates=templates,
        use_p2tformer=fgaseg,
        use_t2p_loss=fgaseg,
        use_gcs=fgaseg,
        use_lcs=fgaseg,
        decoder_mode=arch.decoder,
        fusion=arch.fusion or "cat",
        topk=16 if arch.decoder == "fast" else None,
        p2t_layers=max(arch.p2t_layers, 1),
        lcs_kernel_size=arch.kernel_size or 3,
        hidden_dim=arch.hidden_dim,
        num_layers=arch.num_layers,
        window_size=arch.window_size,
        pad_len=arch.pad_len,
        text_guidance_proj_dim=arch.text_guidance_proj_dim,
        appearance_guidance_proj_dim=arch.appearance_guidance_proj_dim,
        decoder_dims=arch.decoder_dims,
        decoder_guidance_dims=arch.decoder_guidance_dims,
        decoder_guidance_proj_dims=arch.decoder_guidance_proj_dims,
        extra={"converted_from": arch.describe()},
    )


def expected_state_shapes(config) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of the state dict of ``FGASeg(config)``, built without allocating memory."""
    from fgaseg.model import FGASeg

    with torch.device("meta"):
        model = FGASeg(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


# ----------------------------------------------------------------------------- conversion
def rename_official_state_dict(official: Mapping[str, Any]) -> StateDict:
    """Official ``model`` dict -> our names; unknown keys raise a one-line WeightsError."""
    renamed: StateDict = {}
    unknown: List[str] = []
    for key, value in official.items():
        ours = official_to_ours(key)
        if ours is None:
            unknown.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"official checkpoint entry {key} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and value.dtype != torch.float32:
            value = value.float()
        renamed[ours] = value
    if unknown:
        hint = ""
        if any(key.startswith("backbone.") for key in unknown):
            hint = " (a pre-CVPR CAT-Seg checkpoint with a separate backbone; only the CLIP-only versions are supported)"
        raise WeightsError(f"official checkpoint has unknown keys: {_name_list(sorted(unknown))}{hint}")
    return renamed


def check_against_model(state: Mapping[str, torch.Tensor], expected: Mapping[str, Tuple[int, ...]]) -> None:
    """Strict comparison of a converted state dict with the model's names and shapes."""
    unused = sorted(set(state) - set(expected))
    if unused:
        official = [ours_to_official(name) for name in unused]
        hint = ""
        if any(name.endswith("prompt_tokens") for name in unused):
            hint = " (visual prompt tuning, PROMPT_LENGTH > 0, is not supported)"
        raise WeightsError(f"official tensors with no place in the fgaseg model: {_name_list(official)}{hint}")
    missing = sorted(set(expected) - set(state))
    if missing:
        official = [ours_to_official(name) for name in missing]
        raise WeightsError(f"official checkpoint lacks tensors the model needs: {_name_list(official)}")
    wrong = [
        f"{ours_to_official(name)} {tuple(state[name].shape)} vs {expected[name]}"
        for name in sorted(state)
        if tuple(state[name].shape) != tuple(expected[name])
    ]
    if wrong:
        raise WeightsError(f"official tensor shapes do not fit the model: {_name_list(wrong, 2)}")
    _check_swin_masks(state)


def _check_swin_masks(state: Mapping[str, torch.Tensor]) -> None:
    # the shifted-window masks are constants (0 inside a window region, -100 across regions)
    for name, mask in state.items():
        if name.endswith(".attn_mask") and name.startswith("head."):
            if mask.device.type != "meta" and not bool(((mask == 0) | (mask == -100)).all()):
                raise WeightsError(f"{ours_to_official(name)} is not a Swin window mask (corrupt checkpoint)")


def load_official_model_dict(source: Source, *, allow_pickle: bool = False) -> Dict[str, Any]:
    """The official ``model`` dict of a path or loaded object; WeightsError when it is not one."""
    if isinstance(source, Mapping):
        obj, label = source, "checkpoint"
    else:
        obj, label = read_checkpoint_file(source, allow_pickle=allow_pickle), str(source)
    model = _model_dict(obj)
    if model is None:
        raise WeightsError(f"{label} is not an official CAT-Seg / FGA-seg checkpoint ({_describe(obj)})")
    return _strip_module_prefix(model)


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [str(key) for key in list(obj)[:3]]
        inner = obj.get("model") if isinstance(obj.get("model"), Mapping) else None
        if inner:
            keys = [f"model.{key}" for key in list(inner)[:3]]
        return f"keys {', '.join(keys)}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def convert_official_model_dict(official: Mapping[str, Any]):
    """``(OfficialArchitecture, FGASegConfig, state_dict)`` from an official ``model`` dict."""
    state = rename_official_state_dict(official)
    arch = infer_architecture(official)
    config = config_from_architecture(arch)
    check_against_model(state, expected_state_shapes(config))
    return arch, config, state


def convert_official_checkpoint(source: Source, *, allow_pickle: bool = False):
    """``(FGASegConfig, state_dict)`` in fgaseg's names from an official checkpoint.

    ``source`` is a ``.pth`` / ``.pkl`` / ``.safetensors`` path, or an already loaded object
    (``{"model": ...}`` or the bare model dict). The state dict loads with ``strict=True`` into
    ``FGASeg(config)``; ``config.extra["converted_from"]`` describes the official architecture.
    Raises WeightsError (one line) for foreign, corrupt or incomplete checkpoints.
    """
    _, config, state = convert_official_model_dict(
        load_official_model_dict(source, allow_pickle=allow_pickle)
    )
    return config, state
