"""Scenes, captions and pre-generated datasets of the synthetic world.

Every scene is a pure function of ``(seed, split name, index)``, so datasets are reproducible and
their parts can be generated in any order. Labels: the class id (index into
``Vocabulary.phrases``) of the visible object at each pixel, **255 for background and clutter**
(ignored in losses and metrics, like the PASCAL-VOC "20 classes without background" protocol).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from fgaseg.errors import ConfigError
from fgaseg.synth.render import IGNORE, draw_objects
from fgaseg.synth.vocabulary import Vocabulary, build_vocabulary

# stable integers for split names, so rng streams never collide
_SPLIT_TAGS = {"clip-scenes": 1, "clip-singles": 2, "train": 3, "test": 4, "preview": 5}


@dataclass
class WorldConfig:
    """How scenes look. Defaults are the benchmark's; tests use smaller images."""

    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 4
    # objects 3-5 patches across and nearly upright: with radius 9-17 and any rotation the
    # tiny ViT hardly learned shape (docs/synthetic.md, "Experiments")
    min_radius: float = 13.0
    max_radius: float = 21.0
    clutter_min: int = 3
    clutter_max: int = 8
    split_seed: int = 0
    pattern_dark: Tuple[float, float] = (0.2, 0.4)  # brightness of stripes/dots vs the object colour
    noise: float = 7.0  # std of the per-pixel Gaussian noise (0-255 scale)
    max_rotation: float = 15.0  # objects are rotated by up to this many degrees either way
    # a dark line along every visible object's boundary (pixels at 64 px, scaled with the image):
    # without it stripes and dots hide the silhouette and the tiny ViT hardly learns shape
    # (docs/synthetic.md, "Third session")
    outline: float = 2.0
    # placement is re-drawn until every object keeps at least this share of its area visible;
    # below ~60 % an occluded circle, square or cross can look like any of them
    min_visible: float = 0.6

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ConfigError(f"synthetic image_size must be >= 16, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError("synthetic scenes need 1 <= min_objects <= max_objects")
        if not 0 < self.min_radius <= self.max_radius:
            raise ConfigError("synthetic scenes need 0 < min_radius <= max_radius")
        if not 0 <= self.min_visible < 1:
            raise ConfigError(f"synthetic min_visible must be in [0, 1), got {self.min_visible}")
        if self.outline < 0:
            raise ConfigError(f"synthetic outline must be >= 0 pixels, got {self.outline}")

    def scaled_radius(self) -> Tuple[float, float]:
        """Radius range scaled with the image size (defaults are for 64 px)."""
        scale = self.image_size / 64
        return self.min_radius * scale, self.max_radius * scale

    def scaled_outline(self) -> int:
        """Outline width in pixels for this image size (at least 1 when enabled)."""
        if self.outline <= 0:
            return 0
        return max(1, round(self.outline * self.image_size / 64))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Scene:
    """One rendered scene: ``image (H, W, 3) uint8``, ``label (H, W) uint8`` and its classes."""

    image: np.ndarray
    label: np.ndarray
    class_ids: List[int]  # in drawing order (later occludes earlier)
    caption: str


def caption_for(phrases: Sequence[str]) -> str:
    """``"a red solid circle, a blue dotted cross and a green striped square"``."""
    items = [f"a {p}" for p in phrases]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in _SPLIT_TAGS:
        raise ConfigError(f"unknown synthetic split {split!r}")
    return np.random.default_rng([int(seed), _SPLIT_TAGS[split], int(index)])


def make_scene(
    world: WorldConfig, vocab: Vocabulary, seed: int, split: str, index: int,
    allowed_ids: Optional[Sequence[int]] = None, num_objects: Optional[int] = None,
    centred: bool = False,
) -> Scene:
    """Render scene ``index`` of ``split``; objects are distinct classes from ``allowed_ids``."""
    rng = scene_rng(seed, split, index)
    pool = np.asarray(allowed_ids if allowed_ids is not None else range(vocab.num_classes))
    if num_objects is None:
        num_objects = int(rng.integers(world.min_objects, world.max_objects + 1))
    class_ids = [int(c) for c in rng.choice(pool, size=min(num_objects, len(pool)), replace=False)]
    attributes = [vocab.attributes[c] for c in class_ids]
    image, label, _ = draw_objects(
        attributes, class_ids, world.image_size, rng, world.scaled_radius(),
        (world.clutter_min, world.clutter_max), centred=centred,
        pattern_dark=tuple(world.pattern_dark), noise=world.noise, max_rotation=world.max_rotation,
        outline=world.scaled_outline(), min_visible=world.min_visible,
    )
    # caption lists objects left to right, as a person describing the picture might
    order = sorted(range(len(class_ids)), key=lambda k: _centre_x(label, class_ids[k]))
    caption = caption_for([vocab.phrases[class_ids[k]] for k in order])
    return Scene(image, label, class_ids, caption)


def _centre_x(label: np.ndarray, class_id: int) -> float:
    xs = np.nonzero(label == class_id)[1]
    return float(xs.mean()) if xs.size else 0.0


class SceneSet(torch.utils.data.Dataset):
    """Pre-generated scenes in memory, usable as a segmentation dataset.

    Arrays: ``images (N, H, W, 3) uint8``, ``labels (N, H, W) uint8`` (255 = ignore),
    ``present (N, C) bool`` (which classes are visible), ``captions``. Items follow the
    project's dataset contract: ``(image (3, H, W) float in [0, 1], label (H, W) int64)``.
    """

    ignore_index = IGNORE

    def __init__(self, images, labels, captions, vocab: Vocabulary) -> None:
        self.images = images
        self.labels = labels
        self.captions = list(captions)
        self.vocab = vocab
        self.class_names = list(vocab.phrases)
        present = np.zeros((len(labels), vocab.num_classes), dtype=bool)
        for i, label in enumerate(labels):
            ids = np.unique(label)
            present[i, ids[ids != IGNORE]] = True
        self.present = present

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255.0
        return image, torch.from_numpy(self.labels[index].astype(np.int64))

    def batch(self, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``images (B, 3, H, W) float [0, 1]``, ``labels (B, H, W) int64`` (255 = ignore)."""
        idx = np.asarray(indices)
        images = torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).float() / 255.0
        labels = torch.from_numpy(self.labels[idx].astype(np.int64))
        return images, labels


def generate_scenes(
    world: WorldConfig, count: int, seed: int, split: str,
    allowed_ids: Optional[Sequence[int]] = None, vocab: Optional[Vocabulary] = None,
    num_objects: Optional[int] = None, centred: bool = False, progress: Optional[str] = None,
    workers: Optional[int] = None,
) -> SceneSet:
    """Render ``count`` scenes of ``split`` into a :class:`SceneSet`.

    Large sets are rendered by ``workers`` forked processes (default: one per CPU core, at most
    4); scene ``i`` is a pure function of ``(seed, split, i)``, so the result does not depend on it.
    """
    vocab = vocab or build_vocabulary(world.split_seed)
    size = world.image_size
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty((count, size, size), dtype=np.uint8)
    captions: List[str] = [""] * count
    job = (world, vocab, seed, split, allowed_ids, num_objects, centred)
    chunks = [range(i, min(count, i + _CHUNK)) for i in range(0, count, _CHUNK)]
    workers = min(len(chunks), workers if workers is not None else min(4, os.cpu_count() or 1))
    bar = _maybe_tqdm(count, progress)
    pool = _fork_pool(workers) if workers > 1 else None
    try:
        parts = pool.map(_render_chunk, [(job, c) for c in chunks]) if pool else (_render_chunk((job, c)) for c in chunks)
        for chunk, (chunk_images, chunk_labels, chunk_captions) in zip(chunks, parts):
            images[chunk.start:chunk.stop], labels[chunk.start:chunk.stop] = chunk_images, chunk_labels
            captions[chunk.start:chunk.stop] = chunk_captions
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    return SceneSet(images, labels, captions, vocab)


_CHUNK = 250  # scenes a worker renders per task


def _render_chunk(task) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    (world, vocab, seed, split, allowed_ids, num_objects, centred), indices = task
    scenes = [make_scene(world, vocab, seed, split, i, allowed_ids, num_objects, centred) for i in indices]
    return (np.stack([s.image for s in scenes]), np.stack([s.label for s in scenes]),
            [s.caption for s in scenes])


def _fork_pool(workers: int):
    """A process pool of ``workers`` forked processes, or None where fork is unavailable."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _maybe_tqdm(total: int, description: Optional[str]):
    if description is None:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, mininterval=0.5)
