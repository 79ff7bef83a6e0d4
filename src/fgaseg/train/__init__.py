"""Training: YAML configs, the (torchrun-ready) training loop, atomic checkpoints.

``fgaseg train CONFIG`` calls :func:`run_training`; see docs/training.md.
"""

from fgaseg.train.checkpoint import load_checkpoint, save_checkpoint
from fgaseg.train.config import (DataConfig, ModelConfig, OptimConfig, TrainConfig, load_config)
from fgaseg.train.loop import Trainer, TrainingDivergedError, TrainResult, run_training

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "load_checkpoint",
    "load_config",
    "run_training",
    "save_checkpoint",
]
