"""fgaseg: open-vocabulary semantic segmentation with FGAseg, in plain PyTorch."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Heavy submodules load on first use so that `fgaseg --help` and `import fgaseg` stay fast.
_LAZY = {
    "FGASeg": "fgaseg.model.fgaseg",
    "FGASegConfig": "fgaseg.model.config",
    "build_clip": "fgaseg.clip",
    "load_clip": "fgaseg.clip",
    "TrainingFreeSegmenter": "fgaseg.training_free",
    "SegmentationResult": "fgaseg.predict.result",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fgaseg' has no attribute {name!r}")
