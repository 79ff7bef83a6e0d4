"""Atomic training checkpoints.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over the target (``os.replace`` is atomic on POSIX and Windows): a process killed while saving
leaves the previous checkpoint intact. ``last.pt`` always names the newest one; numbered copies
``step_0005000.pt`` are kept for the last ``keep`` saves. Each checkpoint holds a SHA-256 of
its tensors, checked on load (``FGASEG_VERIFY_CHECKSUMS=0`` skips the check).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from fgaseg.errors import WeightsError
from fgaseg.model.pretrained_checksums import (ALGORITHM, ENV_SWITCH, state_digest,
                                               verification_enabled)

LAST = "last.pt"
CHECKSUM = "checksum"  # key of the tensors' SHA-256 inside a checkpoint


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to ``path`` via a temporary file + rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_checkpoint(state: Dict[str, Any], folder: Union[str, Path], step: int,
                    keep: int = 2) -> Path:
    """Write ``folder/last.pt`` (and ``step_XXXXXXX.pt`` when ``keep > 0``) atomically."""
    folder = Path(folder)
    for stale in list(folder.glob(".*.tmp")) + list(folder.glob(".*.link")):
        stale.unlink(missing_ok=True)  # left by a process killed while saving
    state = {k: v for k, v in state.items() if k != CHECKSUM}
    state[CHECKSUM] = f"{ALGORITHM}:{state_digest(state)}"  # verified by load_checkpoint
    atomic_torch_save(state, folder / LAST)
    if keep > 0:
        numbered = folder / f"step_{step:07d}.pt"
        # a hard link shares the bytes of last.pt; fall back to a second atomic write
        try:
            tmp = folder / f".{numbered.name}.link"
            if tmp.exists():
                tmp.unlink()
            os.link(folder / LAST, tmp)
            os.replace(tmp, numbered)
        except OSError:
            atomic_torch_save(state, numbered)
        # only files up to this step take part: a numbered file from a later step belongs to
        # another line of training (resumed from an earlier file) and must not outlive ours
        ours = [p for p in list_checkpoints(folder) if _step_of(p) is not None
                and _step_of(p) <= step]
        for old in ours[:-keep]:
            old.unlink(missing_ok=True)
    return folder / LAST


def list_checkpoints(folder: Union[str, Path]) -> List[Path]:
    """Numbered checkpoints in ``folder``, oldest first."""
    return sorted(Path(folder).glob("step_*.pt"))


def _step_of(path: Path) -> Optional[int]:
    try:
        return int(path.stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


def find_resume_checkpoint(path: Union[str, Path]) -> Optional[Path]:
    """``path`` itself if a file, else ``path/last.pt`` or ``path/checkpoints/last.pt``."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / LAST, path / "checkpoints" / LAST):
        if candidate.is_file():
            return candidate
    return None


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise WeightsError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # truncated / foreign file
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {path}: {reason}{_alternatives(path)}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise WeightsError(f"{path} is not an fgaseg training checkpoint{_alternatives(path)}")
    recorded = state.pop(CHECKSUM, None)  # older checkpoints have none
    if recorded is not None and verification_enabled():
        if recorded != f"{ALGORITHM}:{state_digest(state)}":
            raise WeightsError(f"{path} is corrupt: its tensors do not match the {ALGORITHM} "
                               f"recorded when it was saved{_alternatives(path)} "
                               f"({ENV_SWITCH}=0 skips this check)")
    return state


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _alternatives(path: Union[str, Path]) -> str:
    """A hint naming the newest other numbered checkpoint beside ``path``, if any."""
    path = Path(path)
    others = [p for p in list_checkpoints(path.parent)
              if p.name != path.name and not _same_file(p, path)]  # step files link last.pt
    if not others:
        return ""
    return f"; {others[-1].name} beside it may be intact: --resume {others[-1]}"


def rng_state() -> Dict[str, Any]:
    """RNG states of python, numpy, torch (CPU and, if present, every CUDA device)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
