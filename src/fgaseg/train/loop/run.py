"""From a :class:`TrainConfig` to a finished run: data, model, processes, resume."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from fgaseg.data.benchmarks import build_dataset
from fgaseg.train import checkpoint as ckpt
from fgaseg.train import distributed as dist_utils
from fgaseg.train.config import TrainConfig, config_to_dict
from fgaseg.train.loop.trainer import Trainer, TrainResult, seed_everything


def run_training(config: TrainConfig, resume: Union[bool, str, Path, None] = None, *,
                 model_factory: Optional[Callable[[TrainConfig], nn.Module]] = None,
                 device: str = "auto") -> TrainResult:
    """Train as ``config`` says, in this process or as one of torchrun's processes.

    ``resume``: ``True`` continues from ``out_dir/checkpoints/last.pt`` (starting fresh if there
    is none yet), a path continues from that checkpoint (file or run folder).
    ``model_factory`` builds the model (default: :func:`fgaseg.train.factory.build_model`).
    """
    info = dist_utils.setup(device)
    try:
        dataset = build_dataset(config.data.dataset, config.data.root, config.data.split,
                                config.data.vocabulary)
        seed_everything(config.seed)  # identical initial weights in every process
        if model_factory is None:
            from fgaseg.train.factory import build_model

            model = build_model(config.model)
        else:
            model = model_factory(config)
        resume_path = None
        if resume:
            where = Path(config.out_dir) if resume is True else Path(resume)
            resume_path = ckpt.find_resume_checkpoint(where)
            if resume_path is None and resume is not True:
                from fgaseg.errors import WeightsError

                raise WeightsError(f"no checkpoint to resume from at {where}")
            if resume_path is None and info.is_main:
                warnings.warn(f"no checkpoint in {where}: starting from scratch")
        if info.is_main:
            out = Path(config.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
        trainer = Trainer(config, model, dataset, dist=info)
        return trainer.train(resume=resume_path)
    finally:
        dist_utils.cleanup()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
