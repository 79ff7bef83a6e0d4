"""Saving and loading FGASeg weights: our folder format, official checkpoints, hub ids."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple, Union

import torch

from fgaseg.errors import ConfigError, FGASegError, WeightsError, reason
from fgaseg.model.config import FGASegConfig
from fgaseg.model.pretrained_checksums import (ALGORITHM, ENV_SWITCH, file_digest, read_and_hash,
                                               verification_enabled)

if TYPE_CHECKING:  # pragma: no cover
    from fgaseg.model.fgaseg import FGASeg

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "fgaseg"
FORMAT_VERSION = 1


def save_pretrained(model: "FGASeg", directory: Union[str, Path]) -> Path:
    """Write ``config.json`` (with the weights' SHA-256) and ``model.safetensors`` (CLIP
    included) into ``directory``; both files get the usual permissions (0644 under umask 022)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT})
    _usual_permissions(tmp)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(),
            "checksums": {WEIGHTS_NAME: f"{ALGORITHM}:{file_digest(tmp)}"}}
    tmp.replace(directory / WEIGHTS_NAME)
    config_tmp = directory / (CONFIG_NAME + ".tmp")
    config_tmp.write_text(json.dumps(meta, indent=2) + "\n")
    config_tmp.replace(directory / CONFIG_NAME)
    return directory


def _usual_permissions(path: Path) -> None:
    """Files created by Python get 0666 & ~umask; give the weights the same, whatever mode the
    safetensors writer used (it created them 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _read_ours(directory: Path) -> Tuple[FGASegConfig, Dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    try:
        meta = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {directory / CONFIG_NAME}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(f"{directory / CONFIG_NAME} is not an fgaseg model config")
    try:
        config = FGASegConfig.from_dict(meta["config"])
    except ConfigError as exc:
        raise WeightsError(f"{directory / CONFIG_NAME}: {exc}") from None
    weights = directory / WEIGHTS_NAME
    recorded = (meta.get("checksums") or {}).get(WEIGHTS_NAME)
    verify = bool(recorded) and verification_enabled()
    try:
        if verify:
            state, actual = read_and_hash(weights, lambda: load_file(str(weights)))
        else:
            state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise WeightsError(f"cannot read {weights}: {str(exc).splitlines()[0]}") from None
    if verify and recorded != f"{ALGORITHM}:{actual}":
        raise WeightsError(f"{weights} is corrupt: its {ALGORITHM} differs from the one recorded "
                           f"in {CONFIG_NAME} when it was saved (copy it again; "
                           f"{ENV_SWITCH}=0 skips this check)")
    return config, state


def _is_ours(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def _convert_official(path: Path) -> Tuple[FGASegConfig, Dict[str, torch.Tensor]]:
    try:
        from fgaseg.convert.official import convert_official_checkpoint
    except ImportError:
        raise WeightsError(f"{path} is not an fgaseg model folder and the official-checkpoint "
                           "converter is not available") from None
    return convert_official_checkpoint(path)


def _checkpoint_in(directory: Path) -> Path:
    """The single official checkpoint file inside a downloaded folder."""
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".pth", ".pkl", ".pt", ".safetensors"))
    if len(files) != 1:
        raise WeightsError(f"{directory} holds neither an fgaseg model nor exactly one checkpoint file")
    return files[0]


def resolve_source(source: Union[str, Path]) -> Tuple[FGASegConfig, Dict[str, torch.Tensor]]:
    """``(config, state_dict)`` from our folder, our ``model.safetensors`` file, an official
    checkpoint file, or a Hugging Face hub id (``owner/name``, downloaded when online)."""
    path = Path(source).expanduser()
    if _is_ours(path):
        return _read_ours(path)
    if path.is_file() and path.name == WEIGHTS_NAME and _is_ours(path.parent):
        return _read_ours(path.parent)
    folder = path.parent if path.is_file() and path.name == WEIGHTS_NAME else path
    if (folder / WEIGHTS_NAME).is_file() and not (folder / CONFIG_NAME).exists():
        raise WeightsError(f"{folder} holds {WEIGHTS_NAME} but no {CONFIG_NAME}: an fgaseg model "
                           f"folder needs both (save_pretrained and fgaseg convert write them)")
    if path.is_file():
        return _convert_official(path)
    if path.is_dir():
        return _convert_official(_checkpoint_in(path))
    text = str(source)
    from fgaseg.convert.published import fetch_published, published_checkpoint

    if published_checkpoint(text) is not None:  # e.g. "catseg-vitb16": a file in the authors' Space
        return _convert_official(fetch_published(text))
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise WeightsError(f"{text} is not a local path and huggingface_hub is not installed") from None
        try:
            local = Path(snapshot_download(repo_id=text))
        except Exception as exc:  # offline, unknown repo, auth ...
            raise WeightsError(f"cannot download {text} from the Hugging Face hub: "
                               f"{reason(exc)}") from None
        return _read_ours(local) if _is_ours(local) else _convert_official(_checkpoint_in(local))
    raise WeightsError(f"weights not found: {source}")


def load_into(model: "FGASeg", state: Dict[str, torch.Tensor], assign: bool = False) -> None:
    """Strict load with a one-line WeightsError on missing/unexpected keys or shape mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})")
        raise WeightsError("weights do not fit the model; " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except (RuntimeError, FGASegError) as exc:
        raise WeightsError(f"weights do not fit the model: {str(exc).splitlines()[0]}") from None
