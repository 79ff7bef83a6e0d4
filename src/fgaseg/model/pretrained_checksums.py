"""Checksums of saved weights, so that flipped bytes are an error instead of a silently
different model (issue #16.5).

``model.safetensors``: its SHA-256 is recorded in ``config.json`` when saving and compared when
loading. Training checkpoints: a SHA-256 over every tensor in the checkpoint is stored inside it.
SHA-256 runs at about 1 GB/s here (CPU SHA extensions), and the file hash overlaps the
safetensors read. ``FGASEG_VERIFY_CHECKSUMS=0`` skips the verification (not the recording).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar, Union

import torch

ENV_SWITCH = "FGASEG_VERIFY_CHECKSUMS"
ALGORITHM = "sha256"
_READ = 8 << 20

T = TypeVar("T")


def verification_enabled() -> bool:
    """False when ``FGASEG_VERIFY_CHECKSUMS`` is ``0`` / ``false`` / ``no`` / ``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def file_digest(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.new(ALGORITHM)
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ):
            digest.update(chunk)  # releases the GIL: runs beside the reader in `read_and_hash`
    return digest.hexdigest()


def read_and_hash(path: Union[str, Path], read: Callable[[], T]) -> tuple[T, str]:
    """``(read(), file_digest(path))`` with the hash computed on a second thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(file_digest, path)
        value = read()
        return value, pending.result()


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested dicts / lists / tuples, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=repr):
            yield from _tensors(obj[key])
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def state_digest(state: Any) -> str:
    """Hex SHA-256 over the dtype, shape and bytes of every tensor in ``state``."""
    digest = hashlib.new(ALGORITHM)
    for tensor in _tensors(state):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()
