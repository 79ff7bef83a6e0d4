"""``load_clip(source)``: CLIP weights from OpenAI, open_clip, transformers files or the hub.

Every failure a user can cause is a one-line :class:`~fgaseg.errors.WeightsError`.
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from fgaseg.clip.config import CLIPConfig
from fgaseg.clip.key_mapping import StateDict, hf_config_dict, is_hf_layout, to_ours
from fgaseg.clip.model import CLIP
from fgaseg.errors import WeightsError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def _file_kind(path: Path) -> str:
    """'zip', 'pickle', 'safetensors' or 'unknown', from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") or "/code/" in name
                       for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read_file(path: Path) -> Tuple[dict, Dict[str, str]]:
    """Raw mapping and safetensors metadata (empty for other formats) of one weights file."""
    kind = _file_kind(path)
    if kind == "unknown":
        raise WeightsError(
            f"unknown weights format: {path} (expected a PyTorch .pt/.bin, TorchScript or "
            ".safetensors file)"
        )
    try:
        if kind == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
        if kind == "zip" and _is_torchscript(path):
            with warnings.catch_warnings():  # torch.jit is deprecated but OpenAI ships archives
                warnings.simplefilter("ignore", DeprecationWarning)
                archive = torch.jit.load(str(path), map_location="cpu")
            return dict(archive.state_dict()), {}
        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except WeightsError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for broken files
        raise WeightsError(
            f"cannot read weights file {path} (truncated or corrupt?): {_one_line(exc)}"
        ) from None


def _unwrap(raw: object, path: Union[Path, str]) -> StateDict:
    """Find the tensor dict inside a checkpoint and drop DDP ``module.`` prefixes."""
    if isinstance(raw, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not any(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"unknown weights format: {path} holds no tensor state dict")
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _hf_folder_file(folder: Path) -> Path:
    for name in _HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(
        f"no weights in folder {folder} (expected one of: {', '.join(_HF_WEIGHT_FILES)})"
    )


def _download_from_hub(repo_id: str) -> Path:
    """Snapshot folder of a hub repo with config.json and one weights file."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(
            f"{repo_id!r} looks like a Hugging Face hub id but huggingface_hub is not installed "
            "(pip install 'fgaseg[hub]'), or pass a local weights file or folder"
        ) from None
    errors = []
    for name in _HF_WEIGHT_FILES:
        try:
            weights = hf_hub_download(repo_id, name)
            try:
                hf_hub_download(repo_id, "config.json")
            except Exception:  # config only refines head counts; weights alone suffice
                pass
            return Path(weights).parent
        except Exception as exc:  # offline, not cached, missing file, no such repo
            errors.append(f"{name}: {_one_line(exc)[:120]}")
    raise WeightsError(
        f"no local file {repo_id!r} and cannot get it from the Hugging Face hub (offline and not "
        f"cached, or no such repo: {errors[0]}); download it where you are online and pass the local file or "
        "folder, e.g. load_clip('/path/to/clip-folder') or --weights /path/to/model.safetensors"
    )


def read_clip_state_dict(
    source: Union[str, Path],
) -> Tuple[StateDict, Optional[dict], Dict[str, str]]:
    """Our-layout state dict, the transformers config (if any) and file metadata of ``source``."""
    path = Path(source).expanduser()
    if not path.exists():
        text = str(source)
        if _HUB_ID.match(text) and not text.lower().endswith(_WEIGHT_SUFFIXES):
            path = _download_from_hub(text)
        else:
            raise WeightsError(f"weights file not found: {source}")
    hf_config = None
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            try:
                hf_config = json.loads(config_file.read_text())
            except (OSError, ValueError) as exc:
                raise WeightsError(f"cannot read {config_file}: {_one_line(exc)}") from None
        path = _hf_folder_file(path)
    raw, metadata = _read_file(path)
    state = _unwrap(raw, path)
    if any(key.startswith("visual.layer1.") for key in state):
        raise WeightsError(f"{path} is a ResNet CLIP; only ViT CLIP models are supported")
    return to_ours(state), hf_config, metadata


def _count_blocks(state: StateDict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_config(state: StateDict, hf_config: Optional[dict] = None,
                 metadata: Optional[Dict[str, str]] = None, source: str = "") -> CLIPConfig:
    """CLIPConfig from tensor shapes (heads = width // 64 unless a config says otherwise)."""
    if metadata and "fgaseg_clip_config" in metadata:
        return CLIPConfig.from_dict(json.loads(metadata["fgaseg_clip_config"]))
    needed = ["visual.conv1.weight", "visual.positional_embedding", "text_projection",
              "token_embedding.weight", "positional_embedding", "ln_final.weight"]
    missing = [key for key in needed if key not in state]
    if missing:
        raise WeightsError(
            f"{source} is not a CLIP ViT checkpoint: missing keys {', '.join(missing[:4])}"
        )
    conv = state["visual.conv1.weight"]
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state["ln_final.weight"].shape[0]
    vision_heads, text_heads = max(1, vision_width // 64), max(1, text_width // 64)
    if hf_config:
        vision_cfg = hf_config.get("vision_config") or {}
        text_cfg = hf_config.get("text_config") or {}
        for cfg in (vision_cfg, text_cfg):
            act = cfg.get("hidden_act", "quick_gelu")
            if act != "quick_gelu":
                raise WeightsError(
                    f"{source} uses activation {act!r}; only OpenAI-style QuickGELU CLIP is supported"
                )
        vision_heads = vision_cfg.get("num_attention_heads", vision_heads)
        text_heads = text_cfg.get("num_attention_heads", text_heads)
    try:
        return CLIPConfig(
            embed_dim=state["text_projection"].shape[1],
            image_resolution=grid * patch,
            vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
            vision_width=vision_width,
            vision_patch_size=patch,
            vision_heads=vision_heads,
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            transformer_width=text_width,
            transformer_heads=text_heads,
            transformer_layers=_count_blocks(state, "transformer.resblocks."),
        )
    except Exception as exc:
        raise WeightsError(f"cannot infer a CLIP architecture from {source}: {_one_line(exc)}") from None


def load_clip_state_dict(model: CLIP, state: StateDict, source: str = "weights") -> None:
    """Strictly load an our-layout state dict; one-line WeightsError on key or shape problems."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:3])}")
        raise WeightsError(f"{source} does not fit CLIP: " + "; ".join(parts))
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source} does not fit CLIP: shape mismatch for {key}: file "
                f"{tuple(state[key].shape)} vs model {tuple(value.shape)}"
            )
    model.load_state_dict(state, strict=True)


def load_clip(source: Union[str, Path], config: Optional[CLIPConfig] = None,
              device: Union[str, torch.device, None] = None) -> CLIP:
    """CLIP (in eval mode, float32) from a weights file, folder or hub id.

    Accepts OpenAI ``.pt`` (TorchScript or state dict), open_clip checkpoints, CAT-Seg-layout
    state dicts, transformers ``CLIPModel`` folders / safetensors files and hub ids such as
    ``openai/clip-vit-base-patch16``. The architecture is inferred from the weights unless
    ``config`` is given.
    """
    state, hf_config, metadata = read_clip_state_dict(source)
    if config is None:
        config = infer_config(state, hf_config, metadata, str(source))
    model = CLIP(config)
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in state.items()}
    load_clip_state_dict(model, state, str(source))
    if device is not None:
        model = model.to(device)
    return model.eval()


def save_clip(model: CLIP, path: Union[str, Path]) -> Path:
    """Write ``model`` as a safetensors file (our layout) with its config in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt",
                                          "fgaseg_clip_config": json.dumps(model.config.to_dict())})
    return path


__all__ = ["hf_config_dict", "infer_config", "is_hf_layout", "load_clip", "load_clip_state_dict",
           "read_clip_state_dict", "save_clip"]
