"""Stage 2: train FGAseg on segmentation of the *seen* classes only.

Each step takes a batch of training scenes (which contain seen classes only) and a class list
made of every class present in the batch plus random seen negatives, so that
``batch × classes`` stays near a fixed number of (image, class) pairs — the head's cost grows
with it. Labels are remapped to positions in that list; background stays 255.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from fgaseg.errors import ConfigError, reason
from fgaseg.synth.world import SceneSet


@dataclass
class SegTrainConfig:
    """Budget and optimiser of the segmentation stage."""

    steps: int = 300
    batch_size: int = 4
    # None: every seen class in every step, as the paper trains with its whole training
    # vocabulary (COCO-Stuff's 171 classes) at each iteration; an int samples that many seen
    # classes a step (the present ones always kept, so often more). With 16 the head learns on
    # ~20-class lists but is evaluated on 72 phrases, and scored 2-15 hIoU lower (docs/synthetic.md)
    classes_per_step: Optional[int] = None
    lr: float = 2e-3
    clip_lr_multiplier: float = 0.3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    num_train_scenes: int = 4000
    # negatives are first drawn from the seen "shape siblings" of present classes (same colour
    # and pattern, another shape): the pairs that teach the head to tell shapes apart
    shape_negatives: bool = False

    def __post_init__(self) -> None:
        if self.classes_per_step is not None and self.classes_per_step < 1:
            raise ConfigError(f"classes_per_step must be None (all seen classes) or >= 1, got {self.classes_per_step}")
        if self.batch_size < 1 or self.steps < 0:
            raise ConfigError("segmentation training needs batch_size >= 1 and steps >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_classes(
    present: np.ndarray, seen_ids: np.ndarray, count: int, rng: np.random.Generator,
    siblings: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Global class ids for one step: all ``present`` ones plus seen negatives, shuffled.

    With ``siblings (C, C) bool``, negatives related to a present class come first.
    """
    present = np.flatnonzero(present)
    negatives = np.setdiff1d(seen_ids, present)
    extra = min(max(0, count - len(present)), len(negatives))
    if siblings is not None and extra:
        related = siblings[present].any(0)[negatives]
        first, rest = rng.permutation(negatives[related]), rng.permutation(negatives[~related])
        picked = np.concatenate([first, rest])[:extra]
    else:
        picked = rng.choice(negatives, size=extra, replace=False)
    return rng.permutation(np.concatenate([present, picked]))


def _shape_siblings(vocab) -> np.ndarray:
    """``(C, C) bool``: classes with the same colour and pattern and another shape."""
    attributes = np.asarray(vocab.attributes)
    same = (attributes[:, None, :2] == attributes[None, :, :2]).all(-1)
    return same & (attributes[:, None, 2] != attributes[None, :, 2])


def remap_labels(labels: torch.Tensor, class_ids: np.ndarray, ignore: int = 255) -> torch.Tensor:
    """Global ids -> positions in ``class_ids``; ids not in the list and ``ignore`` -> ``ignore``."""
    lookup = torch.full((256,), ignore, dtype=torch.int64)
    lookup[torch.as_tensor(class_ids, dtype=torch.int64)] = torch.arange(len(class_ids))
    return lookup[labels]


def _augment(images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator):
    """Random horizontal/vertical flips of images ``(B, 3, H, W)`` and labels ``(B, H, W)``."""
    if rng.random() < 0.5:
        images, labels = images.flip(-1), labels.flip(-1)
    if rng.random() < 0.5:
        images, labels = images.flip(-2), labels.flip(-2)
    return images, labels


def build_optimizer(model, config: SegTrainConfig) -> torch.optim.Optimizer:
    groups = model.parameter_groups(
        lr=config.lr, clip_lr_multiplier=config.clip_lr_multiplier, weight_decay=config.weight_decay
    )
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def lr_factor(step: int, config: SegTrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return float(0.5 * (1 + np.cos(np.pi * min(1.0, progress))))


def train_segmentation(
    model, scenes: SceneSet, config: SegTrainConfig, seed: int = 0, progress: bool = True,
    desc: str = "stage 2/3: train FGAseg", log: Optional[Callable[[str], None]] = None,
    checkpoint: Optional[Path] = None, checkpoint_every: int = 200, context: Optional[dict] = None,
) -> Dict[str, object]:
    """Train ``model`` in place on ``scenes`` (seen classes only); returns timing and losses.

    With ``checkpoint``, the run's whole state (weights, optimizer, both random streams, loss
    history) is written there every ``checkpoint_every`` steps, and a run that finds the file
    continues from it: a killed multi-hour run loses minutes, and the resumed run takes the
    same batches and gets the same numbers as a straight one. ``context`` (e.g. the world and
    CLIP settings) is stored with it and must match to resume. The file stays after the last
    step; the caller deletes it once the run's results are safely written.
    """
    from tqdm.auto import tqdm

    vocab = scenes.vocab
    seen_ids = np.asarray(vocab.seen_ids)
    if scenes.present[:, list(vocab.unseen_ids)].any():
        raise ValueError("segmentation training scenes must not contain unseen classes")
    rng = np.random.default_rng([seed, 42])
    count = len(seen_ids) if config.classes_per_step is None else config.classes_per_step
    siblings = _shape_siblings(vocab) if config.shape_negatives else None
    torch.manual_seed(seed)
    optimizer = build_optimizer(model, config)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    device = next(model.parameters()).device
    model.train()
    start = time.time()
    history: List[Dict[str, float]] = []
    first, earlier_seconds = 0, 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        first, earlier_seconds, history = _resume(checkpoint, model, optimizer, rng, config, seed, context)
        if log is not None:
            log(f"{desc}: resumed at step {first} from {checkpoint}")
    bar = tqdm(total=config.steps, initial=first, desc=desc, disable=not progress, mininterval=1.0,
               dynamic_ncols=True)
    for step in range(first, config.steps):
        indices = rng.choice(len(scenes), size=config.batch_size, replace=False)
        images, labels = _augment(*scenes.batch(indices), rng)
        class_ids = sample_classes(scenes.present[indices].any(0), seen_ids, count, rng, siblings)
        targets = remap_labels(labels, class_ids)
        names = [vocab.phrases[i] for i in class_ids]
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * lr_factor(step, config)
        out = model(images.to(device), names, targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in out.losses.items()} | {"loss": float(out.loss.detach())})
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-20:]]):.3f}")
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == config.steps):
            _save(checkpoint, model, optimizer, rng, config, seed, context, step + 1,
                  earlier_seconds + time.time() - start, history)
    bar.close()
    model.eval()
    tail = history[-20:]
    seconds = earlier_seconds + time.time() - start
    return {
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(1, config.steps), 3),
        "resumed_at_step": first,
        "resumed_seconds": round(earlier_seconds, 1),
        "final_losses": {k: float(np.mean([h[k] for h in tail])) for k in tail[0]} if tail else {},
        "loss_curve": [round(h["loss"], 4) for h in history],
    }


def _save(path: Path, model, optimizer, rng: np.random.Generator, config: SegTrainConfig, seed: int,
          context: Optional[dict], step: int, seconds: float, history: List[Dict[str, float]]) -> None:
    from fgaseg.train.checkpoint import atomic_torch_save

    atomic_torch_save({
        "kind": "fgaseg synthetic training run", "config": config.to_dict(), "seed": seed,
        "context": context, "step": step,
        "seconds": seconds, "history": history, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }, path)


def read_run_checkpoint(path: Path) -> dict:
    """The contents of a `_save` file; ``ConfigError`` (one line) if it is not one."""
    # tensors, plain Python values and numpy scalars only: loading runs no code from the file
    # (numpy float64 learning rates are in the optimizer state of files written before 2026-12-02)
    core = getattr(np, "_core", None) or np.core  # numpy 2 / 1
    numpy_scalars = [core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign file: say which, never train over it
        raise ConfigError(f"cannot resume from {path}: {reason(error)}; delete it to start this run afresh") from None
    if not isinstance(state, dict) or state.get("kind") != "fgaseg synthetic training run":
        raise ConfigError(f"{path} is not a synthetic training checkpoint; delete it to start afresh")
    return state


def _resume(path: Path, model, optimizer, rng: np.random.Generator, config: SegTrainConfig,
            seed: int, context: Optional[dict]) -> Tuple[int, float, List[Dict[str, float]]]:
    """Load a `_save` file into ``model``, ``optimizer`` and ``rng``; (step, seconds, history)."""
    state = read_run_checkpoint(path)
    if state["config"] != config.to_dict() or state["seed"] != seed or state.get("context") != context:
        raise ConfigError(f"{path} holds a run with another config or seed; delete it to start afresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["step"], float(state["seconds"]), list(state["history"])
