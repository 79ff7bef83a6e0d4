"""Converter for the official CAT-Seg / FGA-seg detectron2 checkpoints (see docs/checkpoints.md)."""

from fgaseg.convert.architecture import OfficialArchitecture, infer_architecture
from fgaseg.convert.official import (
    PREFIX_TABLE,
    convert_official_checkpoint,
    convert_official_model_dict,
    is_official_checkpoint,
    load_official_model_dict,
    official_to_ours,
    ours_to_official,
)
from fgaseg.convert.published import PUBLISHED, fetch_published, published_checkpoint
from fgaseg.convert.reading import read_checkpoint_file

__all__ = [
    "PREFIX_TABLE",
    "PUBLISHED",
    "OfficialArchitecture",
    "convert_official_checkpoint",
    "convert_official_model_dict",
    "fetch_published",
    "infer_architecture",
    "is_official_checkpoint",
    "load_official_model_dict",
    "official_to_ours",
    "ours_to_official",
    "published_checkpoint",
    "read_checkpoint_file",
]
