"""Segment your own images: image loading, class-name lists, predict(), results and overlays."""

from fgaseg.predict.api import DEFAULT_MAX_SIDE, predict
from fgaseg.predict.class_names import parse_class_names, read_class_file
from fgaseg.predict.image_io import MAX_PIXELS, load_image
from fgaseg.predict.result import SegmentationResult

__all__ = ["predict", "SegmentationResult", "load_image", "parse_class_names",
           "read_class_file", "MAX_PIXELS", "DEFAULT_MAX_SIDE"]
