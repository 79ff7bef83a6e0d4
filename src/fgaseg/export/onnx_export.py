"""ONNX export of a segmenter with a FIXED class list and a fixed input size.

The exported graph maps ``images (1, 3, H, W)`` float RGB in ``[0, 1]`` to ``logits
(1, T, H, W)``; CLIP normalisation and the class text embeddings are inside the graph (the
embeddings as constants), so no tokenizer or text encoder is needed at run time. The class
names are stored in the model's metadata (``fgaseg.class_names``, JSON) and in a
``<out>.json`` file beside it.

Data-dependent class pruning (TopK) is switched off for export (``topk=0``): a traced graph
would freeze the classes chosen for the tracing image. The exporter is torch's dynamo-based
one when ``onnxscript`` is installed (needed for FGASeg), else the TorchScript one (enough for
training-free CLIP segmenters); see `fgaseg.export.patches` for what each cannot translate.
After export the ONNX model is run with onnxruntime on a *different* image than the one used
for tracing and compared with the public ``segment_logits``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from fgaseg.errors import ConfigError
from fgaseg.export.patches import explicit_attention, static_positional_embedding
from fgaseg.predict.class_names import parse_class_names

DEFAULT_OPSET = 18
EXPORTERS = ("auto", "dynamo", "torchscript")


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
                                             topk=0)


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
                atol: float = 1e-3, seed: int = 0, exporter: str = "auto") -> ExportReport:
    """Export `segmenter` for `class_names` at `image_size` ``(H, W)`` to `path`.

    `exporter`: "dynamo" (needs onnxscript), "torchscript", or "auto" (dynamo if available).
    Raises ConfigError for bad sizes or a missing onnx/onnxscript, RuntimeError when the
    exported model's outputs differ from PyTorch's by more than `atol`.
    """
    names = parse_class_names(class_names)
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ConfigError(f"image size must be positive, got {height}x{width}")
    _require("onnx", "onnx")
    use_dynamo = _use_dynamo(exporter)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmenter = segmenter.eval()
    wrapper = FixedClassSegmenter(segmenter, names, sliding=sliding).eval()
    output_names = (list(segmenter.output_class_names(names))
                    if hasattr(segmenter, "output_class_names") else names)
    device = next((p.device for p in segmenter.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    example = torch.rand(1, 3, height, width, generator=generator).to(device)

    start = time.perf_counter()
    chatter = io.StringIO()  # the dynamo exporter prints progress lines to stdout
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter), \
            _quiet_loggers("onnxscript", "torch.onnx"), explicit_attention(), \
            static_positional_embedding(wrapper):
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected
        kwargs = dict(input_names=["images"], output_names=["logits"], opset_version=opset,
                      dynamo=use_dynamo)
        if use_dynamo:
            kwargs.update(external_data=_parameter_bytes(segmenter) > 1.8e9, verbose=False)
        else:
            kwargs.update(do_constant_folding=True)
        torch.onnx.export(wrapper, (example,), str(path), **kwargs)
    seconds = time.perf_counter() - start
    _write_metadata(path, output_names, (height, width), sliding)

    max_diff = None
    if check:  # against the public segment_logits, on an image the tracer never saw
        fresh = torch.rand(1, 3, height, width, generator=generator).to(device)
        max_diff = compare_with_onnxruntime(wrapper, path, fresh)
        if max_diff > atol:
            raise RuntimeError(f"ONNX output differs from PyTorch by {max_diff:.3g} "
                               f"(> {atol:g}); the graph is not faithful")
    return ExportReport(path, output_names, (height, width), max_diff, seconds)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """Hide the exporters' chatter (e.g. warnings "Skipping constant folding ...")."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.ERROR))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _use_dynamo(exporter: str) -> bool:
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if exporter == "torchscript":
        return False
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        if exporter == "dynamo":
            raise ConfigError("the dynamo ONNX exporter needs onnxscript: "
                              "pip install 'fgaseg[onnx]'") from None
        return False
    return True


def _parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


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
