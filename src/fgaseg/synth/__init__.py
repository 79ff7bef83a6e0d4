"""A synthetic open-vocabulary segmentation world and the benchmark ``fgaseg demo`` runs.

>>> from fgaseg.synth import demo_config, run_benchmark
>>> results = run_benchmark(demo_config(), out_dir="outputs/demo")   # doctest: +SKIP
>>> results["rows"][0]["mIoU_unseen"]                                # doctest: +SKIP
"""

from importlib import import_module
from typing import Any

from fgaseg.synth.vocabulary import Vocabulary, build_vocabulary
from fgaseg.synth.world import SceneSet, WorldConfig, caption_for, generate_scenes, make_scene

# stages that need the model load on first use
_LAZY = {
    "BenchmarkConfig": "fgaseg.synth.benchmark",
    "demo_config": "fgaseg.synth.benchmark",
    "smoke_config": "fgaseg.synth.benchmark",
    "run_benchmark": "fgaseg.synth.benchmark",
    "run_ablations": "fgaseg.synth.ablation",
    "PretrainConfig": "fgaseg.synth.pretrain",
    "pretrained_tiny_clip": "fgaseg.synth.pretrain",
    "SegTrainConfig": "fgaseg.synth.segtrain",
    "train_segmentation": "fgaseg.synth.segtrain",
}

__all__ = [
    "SceneSet", "Vocabulary", "WorldConfig", "build_vocabulary", "caption_for", "generate_scenes",
    "make_scene", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fgaseg.synth' has no attribute {name!r}")
