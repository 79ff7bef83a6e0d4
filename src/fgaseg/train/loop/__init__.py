"""The training loop (:class:`Trainer`) and the config-to-run entry point (:func:`run_training`)."""

from fgaseg.train.loop.run import run_training
from fgaseg.train.loop.trainer import Trainer, TrainingDivergedError, TrainResult

__all__ = ["Trainer", "TrainResult", "TrainingDivergedError", "run_training"]
