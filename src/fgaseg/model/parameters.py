"""Which CLIP parameters train (official ``CLIP_FINETUNE``) and optimizer parameter groups."""

from __future__ import annotations

from typing import Any, Dict, List

from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
          nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)


def clip_param_trainable(name: str, mode: str) -> bool:
    """Official rule, applied to CLIP parameter names.

    ``"attention"``: under ``transformer`` (both towers), the attention q and v projection weights
    and anything named ``position``; everything else (k, out-proj, packed bias, MLPs, norms,
    embeddings, projections, logit scale) frozen. ``"frozen"``: nothing. ``"full"``: everything.
    """
    if mode == "full":
        return True
    if mode != "attention" or "transformer" not in name:
        return False
    if "attn" in name:
        return "q_proj" in name or "v_proj" in name
    return "position" in name


def apply_clip_finetune(clip: nn.Module, mode: str) -> None:
    for name, param in clip.named_parameters():
        param.requires_grad_(clip_param_trainable(name, mode))


def parameter_groups(model: nn.Module, lr: float, clip_lr_multiplier: float = 0.01,
                     weight_decay: float = 1e-4, weight_decay_norm: float = 0.0,
                     clip_prefix: str = "clip") -> List[Dict[str, Any]]:
    """detectron2-style groups as in the official ``build_optimizer``: CLIP parameters get
    ``lr * clip_lr_multiplier``; parameters of normalisation layers get ``weight_decay_norm``.
    Only parameters with ``requires_grad`` are included. Each group has a ``name``."""
    groups: Dict[tuple, Dict[str, Any]] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_clip = module_name == clip_prefix or module_name.startswith(clip_prefix + ".")
            is_norm = isinstance(module, _NORMS)
            key = (is_clip, is_norm)
            if key not in groups:
                groups[key] = {
                    "name": ("clip" if is_clip else "head") + ("_norm" if is_norm else ""),
                    "params": [],
                    "lr": lr * (clip_lr_multiplier if is_clip else 1.0),
                    "weight_decay": weight_decay_norm if is_norm else weight_decay,
                }
            groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]
