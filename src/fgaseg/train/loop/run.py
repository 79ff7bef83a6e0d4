"""From a :class:`TrainConfig` to a finished run: data, model, processes, resume."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from fgaseg.data.benchmarks import build_dataset
from fgaseg.errors import ConfigError
from fgaseg.folder_lock import folder_lock
from fgaseg.train import checkpoint as ckpt
from fgaseg.train import distributed as dist_utils
from fgaseg.train.config import TrainConfig, config_to_dict
from fgaseg.train.loop.trainer import Trainer, TrainResult, seed_everything


# what a training run writes into its folder; any of them means "a run is here"
_RUN_FILES = ("config.json", "checkpoints", "final", "tensorboard")


def existing_run(out_dir: Union[str, Path]) -> list[str]:
    """Names of the training outputs already in ``out_dir`` (empty: nothing to overwrite)."""
    out = Path(out_dir)
    found = []
    for name in _RUN_FILES:
        path = out / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name + ("/" if path.is_dir() else ""))
    return found


def check_out_dir(out_dir: Union[str, Path], resume: Union[bool, str, Path, None],
                  force: bool) -> None:
    """Refuse (ConfigError) to start a new run over an earlier one in ``out_dir``.

    Allowed: an empty / new folder; ``resume`` continuing the run in this folder; ``force``.
    Checked before anything is written, so a refused run changes nothing.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {out} exists and is not a folder")
    found = existing_run(out)
    if not found or force:
        return
    if resume is True:
        return
    if resume:
        source = Path(resume).resolve()
        if source == out.resolve() or out.resolve() in source.parents:
            return
    raise ConfigError(f"{out} already holds a training run ({', '.join(found)}); pass --resume "
                      "to continue it, or --overwrite to replace it")


def clear_run(out_dir: Union[str, Path]) -> None:
    """Delete an earlier run's checkpoints, final weights and logs (``--overwrite``), so that
    nothing of it is mistaken for this run's (checkpoint pruning, ``final/``)."""
    out = Path(out_dir)
    for name in _RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_training(config: TrainConfig, resume: Union[bool, str, Path, None] = None, *,
                 model_factory: Optional[Callable[[TrainConfig], nn.Module]] = None,
                 device: str = "auto", force: bool = False) -> TrainResult:
    """Train as ``config`` says, in this process or as one of torchrun's processes.

    ``resume``: ``True`` continues from ``out_dir/checkpoints/last.pt`` (starting fresh if there
    is none yet), a path continues from that checkpoint (file or run folder).
    An ``out_dir`` that holds another run is refused unless ``resume`` continues it or
    ``force`` is set; ``force`` without ``resume`` deletes the earlier run's outputs first.
    ``model_factory`` builds the model (default: :func:`fgaseg.train.factory.build_model`).
    """
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:  # other ranks could see rank 0's new files
        check_out_dir(config.out_dir, resume, force)
    # two trainings writing one folder would interleave checkpoints and logs
    with folder_lock(Path(config.out_dir), "fgaseg train") if main_rank else nullcontext():
        return _run(config, resume, model_factory, device, force)


def _run(config: TrainConfig, resume: Union[bool, str, Path, None],
         model_factory: Optional[Callable[[TrainConfig], nn.Module]], device: str, force: bool) -> TrainResult:
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
        trainer = Trainer(config, model, dataset, dist=info)
        # a checkpoint that does not fit must fail before the run folder is touched
        if resume_path is not None:
            trainer.check_resume(resume_path)
        if info.is_main:
            out = Path(config.out_dir)
            if force and resume_path is None and existing_run(out):
                warnings.warn(f"--overwrite: deleting the earlier run in {out}")
                clear_run(out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
        return trainer.train(resume=resume_path)
    finally:
        dist_utils.cleanup()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
