"""FGAseg: config, building blocks and the `FGASeg` model."""

from fgaseg.model.config import (
    PRESETS,
    FGASegConfig,
    catseg_tiny,
    catseg_vitb16_384,
    catseg_vitl14_336,
    fgaseg_tiny,
    fgaseg_vitb16_384,
    fgaseg_vitl14_336,
    get_preset,
)

__all__ = [
    "FGASegConfig", "PRESETS", "get_preset", "fgaseg_vitb16_384", "fgaseg_vitl14_336",
    "catseg_vitb16_384", "catseg_vitl14_336", "fgaseg_tiny", "catseg_tiny", "FGASeg", "FGASegOutput",
]


def __getattr__(name: str):
    if name in ("FGASeg", "FGASegOutput"):
        from fgaseg.model import fgaseg

        return getattr(fgaseg, name)
    raise AttributeError(f"module 'fgaseg.model' has no attribute {name!r}")
