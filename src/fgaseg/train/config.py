"""Training configuration: plain dataclasses, loaded from YAML, overridable with ``key=value``.

A YAML file mirrors :class:`TrainConfig` (sections ``data``, ``model``, ``optim`` plus top-level
run settings); unknown keys are errors. ``--opts optim.lr=1e-4 max_iters=100`` overrides any
field; values are parsed as YAML scalars (``1e-4``, ``true``, ``[1, 2]``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from fgaseg.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "coco171"          # a benchmark name (fgaseg.data.list_benchmarks) or "folder"
    root: str = "datasets"            # folder holding the prepared datasets (or the folder data)
    split: Optional[str] = None       # None = the dataset's training split
    vocabulary: Optional[str] = None  # replace the prompted class names (name or file)
    crop_size: int = 384              # random square crop (and padding) size
    min_size: int = 384               # resize shortest side to this first (0 = keep size)
    max_size: int = 1333              # ... but keep the longest side <= this
    flip: bool = True                 # random horizontal flip
    photometric: bool = True          # SSD-style colour jitter
    single_category_max_area: float = 1.0  # 1.0 = plain random crop (the recipe)
    num_workers: int = 4              # DataLoader worker processes per training process


@dataclass
class ModelConfig:
    preset: str = "fgaseg_vitb16_384"  # a fgaseg.model preset function name
    clip_weights: Optional[str] = None  # pretrained CLIP (anything fgaseg.clip.load_clip reads)
    init_weights: Optional[str] = None  # start from a full FGASeg checkpoint instead
    overrides: Dict[str, Any] = field(default_factory=dict)  # FGASegConfig field overrides


@dataclass
class OptimConfig:
    lr: float = 2e-4                  # base learning rate (FGAseg modules)
    clip_lr_multiplier: float = 0.01  # CLIP q/v + positional params get lr * this
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 0.01           # full-model L2 norm clip (0 = off)
    warmup_iters: int = 0             # linear warmup from lr * warmup_factor
    warmup_factor: float = 1.0
    min_lr_ratio: float = 0.0         # cosine decays to lr * this


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_iters: int = 80000            # optimizer steps
    batch_size: int = 8               # global batch per optimizer step (all processes together)
    grad_accum: int = 1               # micro-steps per optimizer step
    seed: int = 0
    amp: str = "auto"                 # auto (bf16 on a bf16-capable GPU, else fp16 on GPU, off on
                                      # CPU) | bf16 | fp16 | off
    checkpoint_every: int = 5000      # also saved at the end
    keep_checkpoints: int = 2         # numbered checkpoints kept besides last.pt (0 = only last)
    log_every: int = 20               # TensorBoard scalar period (steps)
    image_log_every: int = 1000       # TensorBoard example prediction period (0 = never)
    tensorboard: bool = True          # if the tensorboard package is installed
    max_consecutive_nonfinite: int = 20  # stop after this many NaN/inf losses in a row
    out_dir: str = "runs/fgaseg"
    save_pretrained: bool = True      # write out_dir/final (save_pretrained) at the end
    progress: bool = True             # tqdm progress bar on rank 0
    ddp_find_unused_parameters: bool = True  # safe default; False is a little faster if every
                                             # trainable parameter gets a gradient each step
    sync_batchnorm: bool = False      # share BatchNorm statistics across GPUs (the official
                                      # training keeps them per GPU; CUDA only)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert YAML scalars to the field's type (YAML reads ``1e-4`` as a string)."""
    if value is None:
        return None
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    target = args[0] if getattr(annotation, "__origin__", None) is Union and len(args) == 1 \
        else annotation
    try:
        if target is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if target is int and isinstance(value, (int, str)) and not isinstance(value, bool):
            return int(value)
        if target is bool and isinstance(value, str):
            if value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"config key '{name}' expects {target.__name__}, got {value!r}") from None
    return value


def _build(cls, values: Dict[str, Any], where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) in {where}: {', '.join(unknown)}")
    kwargs = {}
    for key, value in values.items():
        if key in SECTIONS and cls is TrainConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{key}' must be a mapping")
            value = _build(SECTIONS[key], value, key)
        elif not (key == "amp" and isinstance(value, bool)):
            value = _coerce(value, hints[key], f"{where}.{key}" if cls is not TrainConfig else key)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: Dict[str, Any]) -> TrainConfig:
    """Nested dict -> :class:`TrainConfig` (validated)."""
    config = _build(TrainConfig, dict(values or {}), "config")
    if isinstance(config.amp, bool):  # YAML reads a bare `off` / `on` as a boolean
        config.amp = "auto" if config.amp else "off"
    validate(config)
    return config


def config_to_dict(config: TrainConfig) -> Dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(values: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML)."""
    values = dict(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[parts[-1]] = value
    return values


def load_config(path: Optional[Union[str, Path]] = None,
                overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from defaults) and apply ``key=value`` overrides."""
    values: Dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    return config_from_dict(apply_overrides(values, overrides))


def validate(config: TrainConfig) -> None:
    """Raise ConfigError for settings that cannot work."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(config.max_iters > 0, "max_iters must be positive")
    need(config.batch_size > 0 and config.grad_accum > 0, "batch_size and grad_accum must be >= 1")
    need(config.batch_size % config.grad_accum == 0,
         f"batch_size {config.batch_size} is not divisible by grad_accum {config.grad_accum}")
    need(config.amp in ("auto", "bf16", "fp16", "off"), "amp must be auto, bf16, fp16 or off")
    need(config.optim.lr > 0, "optim.lr must be positive")
    need(config.checkpoint_every > 0, "checkpoint_every must be positive")
    need(config.data.crop_size > 0, "data.crop_size must be positive")
    need(config.max_consecutive_nonfinite > 0, "max_consecutive_nonfinite must be positive")
