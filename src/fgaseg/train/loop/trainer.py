"""The training loop: one process or many (torchrun + DistributedDataParallel).

Read top to bottom, one optimizer step is:

1. ``grad_accum`` micro-batches from the deterministic sample stream (fgaseg.data.sampler);
2. forward under autocast (bf16 / fp16 on GPU), ``loss / grad_accum`` backward (GradScaler for
   fp16); gradients all-reduced by DDP on the last micro-batch;
3. a non-finite loss or gradient norm in any process skips the step (all processes agree);
   ``max_consecutive_nonfinite`` skips in a row stop the run;
4. full-model L2 gradient clipping, AdamW step, cosine schedule step;
5. logging (tqdm on rank 0, TensorBoard) and atomic checkpoints every ``checkpoint_every``
   steps and at the end.

The model only needs ``model(images, class_names, targets) -> out`` with ``out.loss`` (scalar),
``out.losses`` (dict of scalars) and optionally ``out.logits (B, T, H, W)``, plus optionally
``model.parameter_groups(lr, clip_lr_multiplier, weight_decay)`` and ``save_pretrained(dir)``.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fgaseg.data.sampler import AugmentedDataset, StreamBatchSampler, collate
from fgaseg.data.transforms import TrainTransform
from fgaseg.errors import ConfigError, FGASegError
from fgaseg.train import checkpoint as ckpt
from fgaseg.train import distributed as dist_utils
from fgaseg.train.config import TrainConfig, config_to_dict
from fgaseg.train.schedule import warmup_cosine
from fgaseg.train.tensorboard import TensorBoardLogger, example_panel


class TrainingDivergedError(FGASegError):
    """Too many consecutive non-finite losses."""


@dataclass
class TrainResult:
    step: int                              # optimizer steps done (incl. skipped ones)
    skipped_steps: int                     # non-finite steps skipped in this run
    last_losses: Dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[Path] = None      # last checkpoint written


StepCallback = Callable[["Trainer", int], None]


def _single_thread_worker(_: int) -> None:
    """DataLoader workers resize images with torch ops: one thread each avoids oversubscription."""
    torch.set_num_threads(1)


class _TupleOutput(nn.Module):
    """Wraps the model so DDP sees its output as a tuple of tensors (``find_unused_parameters``
    finds the used parameters by walking from the output tensors, whatever the output class)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images, class_names, targets):
        out = self.model(images, class_names, targets)
        return StepOutput(out.loss, dict(out.losses), getattr(out, "logits", None))


@dataclass
class StepOutput:
    loss: torch.Tensor
    losses: Dict[str, torch.Tensor]
    logits: Optional[torch.Tensor] = None


def _amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _check_model_state(model: nn.Module, state: Dict[str, torch.Tensor], path: Path) -> None:
    """ConfigError naming the checkpoint and the first differing keys unless ``state`` fits."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state)
                   if tuple(own[k].shape) != tuple(state[k].shape))
    parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                 ("wrong shape", wrong)) if keys]
    if parts:
        raise ConfigError(f"{path} was saved from a different model ({'; '.join(parts)}); "
                          "resume with the model config it was trained with, or start a new "
                          "run (--overwrite or another --out)")


class Trainer:
    """Trains ``model`` on ``dataset`` as ``config`` says; see the module docstring."""

    def __init__(self, config: TrainConfig, model: nn.Module, dataset: Dataset, *,
                 class_names: Optional[Sequence[str]] = None,
                 dist: Optional[dist_utils.DistInfo] = None,
                 callbacks: Sequence[StepCallback] = ()) -> None:
        self.config = config
        self.dist = dist or dist_utils.DistInfo()
        self.device = self.dist.device
        self.dataset = dataset
        self.class_names = list(class_names if class_names is not None else dataset.class_names)
        self.ignore_index = getattr(dataset, "ignore_index", 255)
        if self.ignore_index != 255:
            raise ConfigError("training needs label maps with 255 = ignore (at most 255 "
                              f"classes); {getattr(dataset, 'name', 'this dataset')} uses "
                              f"{self.ignore_index}")
        self.callbacks = list(callbacks)
        self.out_dir = Path(config.out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.step = 0
        world = self.dist.world_size
        if config.batch_size % (config.grad_accum * world):
            raise ConfigError(
                f"batch_size {config.batch_size} must be divisible by grad_accum x processes = "
                f"{config.grad_accum} x {world}")
        self.micro_batch = config.batch_size // (config.grad_accum * world)

        self.model = model.to(self.device)
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(
            config.max_iters, config.optim.warmup_iters, config.optim.warmup_factor,
            config.optim.min_lr_ratio))
        self.amp_dtype = _amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.ddp: Optional[nn.Module] = None
        self._checked: Optional[tuple] = None  # (path, state) read by check_resume

    # -- construction ------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        optim = self.config.optim
        if hasattr(self.model, "parameter_groups"):
            groups = self.model.parameter_groups(optim.lr, optim.clip_lr_multiplier,
                                                 optim.weight_decay)
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                                 weight_decay=optim.weight_decay)

    def _wrap_ddp(self) -> nn.Module:
        if not self.dist.enabled:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if self.config.sync_batchnorm:
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                warnings.warn("sync_batchnorm needs CUDA; BatchNorm statistics stay per process")
        return DistributedDataParallel(
            _TupleOutput(self.model), device_ids=device_ids,
            find_unused_parameters=self.config.ddp_find_unused_parameters)

    def _loader(self) -> DataLoader:
        cfg, data = self.config, self.config.data
        transform = TrainTransform(data.crop_size, data.min_size, data.max_size, data.flip,
                                   data.photometric, data.single_category_max_area,
                                   self.ignore_index)
        sampler = StreamBatchSampler(len(self.dataset), cfg.batch_size, grad_accum=cfg.grad_accum,
                                     rank=self.dist.rank, world_size=self.dist.world_size,
                                     seed=cfg.seed, start_step=self.step,
                                     total_steps=cfg.max_iters)
        # the loader gets its own generator: creating it must not draw from the global RNG,
        # or a resumed run's model randomness (dropout) would drift from the straight run's
        return DataLoader(AugmentedDataset(self.dataset, transform, cfg.seed),
                          batch_sampler=sampler, collate_fn=collate,
                          num_workers=data.num_workers, pin_memory=self.device.type == "cuda",
                          worker_init_fn=_single_thread_worker if data.num_workers else None,
                          generator=torch.Generator().manual_seed(cfg.seed + self.step))

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (RNG states of every process included)."""
        rng = dist_utils.all_gather_objects(ckpt.rng_state())
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "data_position": self.step * self.config.batch_size,
                "batch_size": self.config.batch_size, "world_size": self.dist.world_size,
                "rng": rng, "config": config_to_dict(self.config)}

    def save(self) -> Optional[Path]:
        state = self.state_dict()  # collective: every rank takes part
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(state, self.checkpoint_dir, self.step,
                                        self.config.keep_checkpoints)
        dist_utils.barrier()
        return path

    def check_resume(self, path: Path) -> None:
        """Read and check checkpoint ``path`` now (see `read_checkpoint`); ``train(resume=path)``
        then uses what was read instead of reading it again."""
        self._checked = (Path(path), self.read_checkpoint(path))

    def read_checkpoint(self, path: Path) -> dict:
        """Load ``path`` and check that it fits this run (batch size, model keys and shapes,
        optimizer groups) without changing anything: a misfit is one ConfigError line."""
        state = ckpt.load_checkpoint(path)
        if state.get("batch_size") != self.config.batch_size:
            raise ConfigError(f"{path} was trained with batch_size {state.get('batch_size')}; "
                              f"resume needs the same global batch (got {self.config.batch_size})")
        _check_model_state(self.model, state["model"], path)
        saved = [len(g["params"]) for g in state["optimizer"].get("param_groups", [])]
        ours = [len(g["params"]) for g in self.optimizer.param_groups]
        if saved != ours:
            raise ConfigError(f"{path}: its optimizer has parameter groups of sizes {saved}, this "
                              f"model {ours}; was the model config changed?")
        return state

    def load(self, path: Path) -> None:
        """Continue from checkpoint ``path``."""
        checked, self._checked = self._checked, None  # drop our reference once applied
        state = checked[1] if checked and checked[0] == Path(path) else self.read_checkpoint(path)
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"{path}: the optimizer state does not fit this model's parameters "
                              f"({_one_line(exc)}); was the model config changed?") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        rng: List[dict] = state["rng"]
        if len(rng) == self.dist.world_size:
            ckpt.set_rng_state(rng[self.dist.rank])
        else:
            warnings.warn(f"checkpoint has RNG states of {len(rng)} processes, running with "
                          f"{self.dist.world_size}: model randomness (dropout) is reseeded")
            seed_everything(self.config.seed + 1000 * self.step + self.dist.rank)

    # -- the loop ----------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _micro_step(self, model: nn.Module, images, targets, sync: bool):
        """Forward + (maybe) backward of one micro-batch; returns (out, finite)."""
        no_sync = getattr(model, "no_sync", None)
        context = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        with context:
            with self._autocast():
                out = model(images, self.class_names, targets)
            loss = out.loss.float()
            finite = not dist_utils.any_true(not bool(torch.isfinite(loss)), self.device)
            if finite:
                self.scaler.scale(loss / self.config.grad_accum).backward()
            elif self.ddp is not self.model:
                # DDP's reducer expects the backward of every forward it saw; run it through the
                # same graph (the gradients are discarded: this step is skipped everywhere)
                (loss * 0.0).backward()
        return out, finite

    def train(self, resume: Optional[Path] = None) -> TrainResult:
        """Run until ``config.max_iters`` optimizer steps (from ``resume`` if given)."""
        cfg = self.config
        seed_everything(cfg.seed + self.dist.rank)
        if resume is not None:
            self.load(resume)
        model = self.ddp = self._wrap_ddp()
        params = [p for p in self.model.parameters() if p.requires_grad]
        main = self.dist.is_main
        logger = TensorBoardLogger(self.out_dir / "tensorboard", cfg.tensorboard and main)
        progress = None
        if main and cfg.progress:
            from tqdm.auto import tqdm
            progress = tqdm(total=cfg.max_iters, initial=self.step, desc="train",
                            dynamic_ncols=True, unit="it")
        batches = iter(self._loader())
        skipped, consecutive, last_losses, last_path = 0, 0, {}, None
        try:
            while self.step < cfg.max_iters:
                model.train()
                self.optimizer.zero_grad(set_to_none=True)
                finite, sums = True, {}
                for micro in range(cfg.grad_accum):
                    images, targets, _ = next(batches)
                    images = images.to(self.device, non_blocking=True)
                    targets = targets.to(self.device, non_blocking=True)
                    if not finite:  # the step is lost anyway; keep the data position exact
                        continue
                    out, finite = self._micro_step(model, images, targets,
                                                   sync=micro == cfg.grad_accum - 1)
                    for name, value in {"loss": out.loss, **dict(out.losses)}.items():
                        value = value.detach().float() if torch.is_tensor(value) else value
                        sums[name] = sums.get(name, 0.0) + float(value)
                grad_norm = float("nan")
                if finite:
                    self.scaler.unscale_(self.optimizer)
                    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                    if math.isfinite(grad_norm) or self.scaler.is_enabled():
                        self.scaler.step(self.optimizer)  # fp16: the scaler skips inf grads
                        self.scaler.update()
                    else:
                        finite = False
                with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()"
                    warnings.simplefilter("ignore", UserWarning)  # is expected after a skip
                    self.scheduler.step()
                self.step += 1
                if finite:
                    consecutive = 0
                    last_losses = {k: v / cfg.grad_accum for k, v in sums.items()}
                else:
                    skipped += 1
                    consecutive += 1
                    if main:
                        warnings.warn(f"step {self.step}: non-finite loss or gradient, step "
                                      f"skipped ({consecutive} in a row)")
                    if consecutive >= cfg.max_consecutive_nonfinite:
                        raise TrainingDivergedError(
                            f"training stopped at step {self.step}: {consecutive} non-finite "
                            "losses in a row (lower optim.lr, set amp=off, or check the data)")
                lr = self.optimizer.param_groups[0]["lr"]
                if progress is not None:
                    progress.set_postfix(loss=f"{last_losses.get('loss', float('nan')):.4f}",
                                         lr=f"{lr:.2e}", refresh=False)
                    progress.update(1)
                if main and finite and self.step % cfg.log_every == 0:
                    logger.scalars(last_losses, self.step, "train/")
                    logger.scalars({f"lr/{group.get('name', i)}": group["lr"]
                                    for i, group in enumerate(self.optimizer.param_groups)},
                                   self.step, "train/")
                    logger.scalars({"grad_norm": grad_norm}, self.step, "train/")
                if (main and finite and cfg.image_log_every and
                        self.step % cfg.image_log_every == 0 and
                        getattr(out, "logits", None) is not None):
                    logger.image("train/example", example_panel(images[0], targets[0],
                                                                out.logits[0]), self.step)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_iters:
                    last_path = self.save()
                for callback in self.callbacks:
                    callback(self, self.step)
        finally:
            if progress is not None:
                progress.close()
            logger.close()
        if main and cfg.save_pretrained and hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(self.out_dir / "final")
        return TrainResult(self.step, skipped, last_losses, last_path)
