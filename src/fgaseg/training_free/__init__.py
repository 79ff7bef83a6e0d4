"""Training-free open-vocabulary segmentation from plain CLIP weights.

``TrainingFreeSegmenter(clip, method="clearclip")`` implements the Segmenter protocol
(``segment_logits``, ``predict``, ``device``, ``eval``) with the last-block variants of
MaskCLIP, SCLIP, ClearCLIP and NACLIP. See docs/training_free.md.
"""

from fgaseg.training_free.attention import (
    correlative_attention,
    gaussian_spatial_prior,
    identity_attention,
    neighbourhood_attention,
    query_query_attention,
)
from fgaseg.training_free.background import BACKGROUND, apply_background_threshold
from fgaseg.training_free.last_block import DEFAULT_LOGIT_SCALES, LAST_BLOCKS
from fgaseg.training_free.segmenter import METHODS, TrainingFreeSegmenter
from fgaseg.training_free.sliding import sliding_window, window_starts

__all__ = [
    "BACKGROUND",
    "DEFAULT_LOGIT_SCALES",
    "LAST_BLOCKS",
    "METHODS",
    "TrainingFreeSegmenter",
    "apply_background_threshold",
    "correlative_attention",
    "gaussian_spatial_prior",
    "identity_attention",
    "neighbourhood_attention",
    "query_query_attention",
    "sliding_window",
    "window_starts",
]
