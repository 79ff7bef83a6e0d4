"""ONNX export of a segmenter with a FIXED class list and a fixed input size.

The exported graph maps ``images (1, 3, H, W)`` float RGB in ``[0, 1]`` to ``logits
(1, T, H, W)``; CLIP normalisation and the class text embeddings are inside the graph (the
embeddings as constants), so no tokenizer or text encoder is needed at run time. The class
names are stored in the model's metadata (``fgaseg.class_names``, JSON) and in a
``<out>.json`` file beside it.

Data-dependent class pruning (TopK) is switched off for export: a traced graph would freeze
the classes chosen for the tracing image. After export the ONNX model is run with
onnxruntime on a *different* image than the one used for tracing and compared to PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from fgaseg.errors import ConfigError
from fgaseg.predict.class_names import parse_class_names

DEFAULT_OPSET = 17


class FixedClassSegmenter(nn.Module):
    """``forward(images (B, 3, H, W) in [0, 1]) -> (B, T, H, W)`` for one class list."""

    def __init__(self, segmenter: nn.Module, class_names: Sequence[str], *,
                 sliding: bool = False) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.class_names = list(class_names)
        self.sliding = sliding
        if hasattr(segmenter, "encode_classes"):  # fill the text cache before tracing
            with torch.no_grad():
                segmenter.encode_classes(self.class_names)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.segmenter.segment_logits(images, self.class_names, sliding=self.sliding,
                                             topk=None)


@dataclass
class ExportReport:
    path: Path
    classes: list[str]
    image_size: tuple[int, int]
    max_abs_diff: float | None  # onnxruntime vs PyTorch on a fresh image; None if unchecked
    export_seconds: float


def export_onnx(segmenter: nn.Module, class_names: Union[str, Sequence[str]],
                path: Union[str, Path], *, image_size: tuple[int, int] = (384, 384),
                sliding: bool = False, opset: int = DEFAULT_OPSET, check: bool = True,
                atol: float = 1e-3, seed: int = 0) -> ExportReport:
    """Export `segmenter` for `class_names` at `image_size` ``(H, W)`` to `path`.

    Raises ConfigError for bad sizes or when onnx is missing, RuntimeError when the exported
    model's outputs differ from PyTorch's by more than `atol`.
    """
    names = parse_class_names(class_names)
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ConfigError(f"image size must be positive, got {height}x{width}")
    _require("onnx", "onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmenter = segmenter.eval()
    wrapper = FixedClassSegmenter(segmenter, names, sliding=sliding).eval()
    device = next((p.device for p in segmenter.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    example = torch.rand(1, 3, height, width, generator=generator).to(device)

    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings(), trace_safe(wrapper):
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected
        torch.onnx.export(wrapper, (example,), str(path), input_names=["images"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    seconds = time.perf_counter() - start
    _write_metadata(path, names, (height, width), sliding)

    max_diff = None
    if check:
        fresh = torch.rand(1, 3, height, width, generator=generator).to(device)
        max_diff = compare_with_onnxruntime(wrapper, path, fresh)
        if max_diff > atol:
            raise RuntimeError(f"ONNX output differs from PyTorch by {max_diff:.3g} "
                               f"(> {atol:g}); the graph is not faithful")
    return ExportReport(path, names, (height, width), max_diff, seconds)


def compare_with_onnxruntime(module: nn.Module, path: Union[str, Path],
                             images: torch.Tensor) -> float:
    """Largest absolute difference between `module(images)` and the ONNX model at `path`."""
    ort = _require("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(images).float().cpu().numpy()
    (got,) = session.run(["logits"], {"images": images.float().cpu().numpy()})
    if got.shape != expected.shape:
        raise RuntimeError(f"ONNX output has shape {got.shape}, PyTorch {expected.shape}")
    return float(abs(got - expected).max())


@contextlib.contextmanager
def trace_safe(module: nn.Module):
    """Temporarily replace code the TorchScript tracer cannot follow.

    ``VisionTransformer.resized_positional_embedding`` computes the grid side with
    ``round(pos.shape[0] ** 0.5)``; under tracing ``shape[0]`` is a tensor without
    ``__round__``. The replacement does the same with Python ints (the size is fixed anyway).
    """
    patched = []
    for sub in module.modules():
        if hasattr(sub, "resized_positional_embedding") and hasattr(sub, "positional_embedding"):
            sub.resized_positional_embedding = _static_positional_embedding(sub)
            patched.append(sub)
    try:
        yield
    finally:
        for sub in patched:
            del sub.resized_positional_embedding  # back to the class method


def _static_positional_embedding(tower: nn.Module):
    import math

    import torch.nn.functional as F

    def resized(grid: tuple[int, int]) -> torch.Tensor:
        pos = tower.positional_embedding
        side = math.isqrt(int(pos.shape[0]) - 1)
        grid = (int(grid[0]), int(grid[1]))
        if (side, side) == grid:
            return pos
        patch_pos = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=grid, mode="bicubic",
                                  align_corners=False).to(pos.dtype)
        return torch.cat([pos[:1], patch_pos.reshape(pos.shape[1], -1).t()], dim=0)

    return resized


def _write_metadata(path: Path, names: list[str], size: tuple[int, int], sliding: bool) -> None:
    import onnx

    info = {"class_names": names, "input": "images (1, 3, H, W) float RGB in [0, 1]",
            "output": "logits (1, T, H, W); label = argmax over T", "image_size": list(size),
            "sliding": sliding}
    model = onnx.load(str(path), load_external_data=False)
    entry = model.metadata_props.add()
    entry.key, entry.value = "fgaseg.class_names", json.dumps(names, ensure_ascii=False)
    onnx.save(model, str(path))
    Path(str(path) + ".json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")


def _require(module: str, extra: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise ConfigError(f"ONNX export needs {module}: pip install 'fgaseg[{extra}]'") from None
