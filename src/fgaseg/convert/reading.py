"""Reading checkpoint files safely: torch ``.pth``, detectron2 ``.pkl`` and safetensors.

Nothing here executes code from the file. ``.pth`` files go through ``torch.load(...,
weights_only=True)`` (tensors, containers, numbers and numpy arrays only). detectron2 ``.pkl``
files are plain pickles of numpy arrays; they are read with a restricted unpickler that only
rebuilds numpy arrays and ordered dicts and refuses every other Python object.
``allow_pickle=True`` lifts the restriction for ``.pth`` files whose non-weight parts (e.g. a
trainer state) hold other objects; use it only for files from a source you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from fgaseg.errors import WeightsError

PathLike = Union[str, "os.PathLike[str]"]

_ZIP_MAGIC = b"PK\x03\x04"
# globals a detectron2 pickle of numpy arrays may reference, and nothing else
_NUMPY_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}
_HAS_NUMPY_CORE_PRIVATE = importlib.util.find_spec("numpy._core") is not None
# torch.save's legacy (non-zip) format starts with this pickled magic number
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers, and refuses anything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            if module.startswith("numpy.core.") and _HAS_NUMPY_CORE_PRIVATE:
                module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 renamed it
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _numpy_safe_globals() -> list:
    """numpy callables torch's weights-only unpickler may need for arrays stored in a .pth."""
    found = []
    prefix = "numpy._core." if _HAS_NUMPY_CORE_PRIVATE else "numpy.core."
    for module_name, name in sorted(_NUMPY_GLOBALS):
        if not module_name.startswith(prefix) and module_name != "numpy":
            continue
        try:
            module = importlib.import_module(module_name)
            found.append(getattr(module, name))
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found.extend(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))
    return found


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    if allow_pickle:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    kwargs: Dict[str, Any] = {"map_location": "cpu", "weights_only": True}
    if zipfile.is_zipfile(path):
        kwargs["mmap"] = True  # large (ViT-L) files are not copied into memory twice
    if safe_globals is None:  # torch < 2.5: numpy arrays inside a .pth need allow_pickle
        return torch.load(str(path), **kwargs)
    with safe_globals(_numpy_safe_globals()):
        return torch.load(str(path), **kwargs)


def _read_numpy_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(handle, encoding="latin1").load()


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length < 100_000_000 and head[8:9] == b"{"


def read_checkpoint_file(path: PathLike, *, allow_pickle: bool = False) -> Any:
    """The unpickled content of a checkpoint file, tensors on CPU (numpy arrays converted).

    Raises WeightsError (one line) for a missing, empty, truncated, corrupt or unsafe file.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"checkpoint {path} is empty")
    with open(path, "rb") as handle:
        head = handle.read(16)
    try:
        if head.startswith(_ZIP_MAGIC):
            if not zipfile.is_zipfile(path):
                raise WeightsError(f"checkpoint {path} is truncated or corrupt (broken zip archive)")
            obj = _torch_load(path, allow_pickle)
        elif _looks_like_safetensors(head):
            obj = _read_safetensors(path)
        elif head[:1] == b"\x80":  # a pickle: legacy torch.save or a detectron2 .pkl
            obj = _read_legacy_or_numpy_pickle(path, allow_pickle)
        else:
            raise WeightsError(f"{path} is not a PyTorch, detectron2 or safetensors checkpoint")
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) or "refusing to load global" in str(exc):
            found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(exc))
            what = f" such as {found.group(1)}" if found else ""
            raise WeightsError(
                f"{path} contains Python objects besides weights{what}; if you trust its source, "
                "retry with allow_pickle=True (fgaseg convert --allow-pickle)"
            ) from None
        raise WeightsError(f"checkpoint {path} is truncated or corrupt ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile) as exc:
        raise WeightsError(f"checkpoint {path} is truncated or corrupt ({_first_line(exc)})") from None
    return _numpy_to_torch(obj)


def _read_legacy_or_numpy_pickle(path: Path, allow_pickle: bool) -> Any:
    # a detectron2 .pkl is one pickle of numpy arrays; a legacy torch.save file starts with a
    # pickled magic number followed by more pickles, which torch.load reads
    if allow_pickle:
        with open(path, "rb") as handle:
            obj = pickle.load(handle, encoding="latin1")
    else:
        obj = _read_numpy_pickle(path)
    if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
        return _torch_load(path, allow_pickle)
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return message[:200]


def _numpy_to_torch(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise WeightsError("checkpoint holds an object array where a tensor was expected")
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {key: _numpy_to_torch(value) for key, value in obj.items()}
    return obj


def peek_key_names(path: PathLike, limit_bytes: int = 4 << 20) -> bytes:
    """Raw bytes where a checkpoint's key names live, read without unpickling anything.

    For a torch zip file: its pickle stream (``*/data.pkl``, names and metadata only); for a
    safetensors file: its JSON header; otherwise: the first ``limit_bytes`` of the file. Used to
    recognise official checkpoints cheaply; returns b"" when nothing can be read.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                return archive.read(names[0]) if names else b""
        with open(path, "rb") as handle:
            head = handle.read(16)
            if _looks_like_safetensors(head):
                (length,) = struct.unpack("<Q", head[:8])
                handle.seek(8)
                return json.dumps(list(json.loads(handle.read(length)))).encode()
            handle.seek(0)
            return handle.read(limit_bytes)
    except (OSError, zipfile.BadZipFile, ValueError, struct.error, IndexError):
        return b""


__all__ = ["read_checkpoint_file", "peek_key_names"]
