"""Datasets, class-name lists, and training augmentations.

- :func:`load_vocabulary` - shipped class-name lists (coco171, ade150, ade847, pc59, pc459,
  voc20, voc20b) or your own .json / .txt file;
- :func:`build_dataset` - the paper's benchmarks in their prepared layouts, or ``folder``
  (the generic ``images/`` + ``masks/`` + ``classes.txt`` format);
- :class:`TrainTransform` - the recipe's resize / crop / photometric / flip augmentation;
- :class:`StreamBatchSampler` - the deterministic, resumable, sharded sample stream.
"""

from fgaseg.data.benchmarks import BENCHMARKS, build_dataset, list_benchmarks
from fgaseg.data.datasets import IGNORE_INDEX, SegmentationDataset
from fgaseg.data.folder import FolderDataset
from fgaseg.data.sampler import AugmentedDataset, StreamBatchSampler, collate
from fgaseg.data.transforms import PhotometricDistortion, TrainTransform
from fgaseg.data.vocabulary import (IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE,
                                    list_vocabularies, load_vocabulary)

__all__ = [
    "AugmentedDataset",
    "BENCHMARKS",
    "FolderDataset",
    "IGNORE_INDEX",
    "IMAGENET_TEMPLATES",
    "PROMPT_TEMPLATES_SINGLE",
    "PhotometricDistortion",
    "SegmentationDataset",
    "StreamBatchSampler",
    "TrainTransform",
    "build_dataset",
    "collate",
    "list_benchmarks",
    "list_vocabularies",
    "load_vocabulary",
]
