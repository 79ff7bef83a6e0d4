"""A deterministic, resumable, sharded stream of training samples.

The training data is one endless stream: epoch ``e`` is the permutation of the dataset drawn
from ``seed + e``; stream position ``p`` holds the sample ``perm_{p // N}[p % N]``.
Optimizer step ``s`` consumes positions ``[s * G, (s + 1) * G)`` with ``G`` the global batch;
micro-step ``a`` of the gradient accumulation takes the slice ``a * M .. (a + 1) * M`` (``M``
the per-micro-step global batch) and rank ``r`` of ``W`` processes its ``r``-th ``M / W`` part.

So the data position after ``s`` steps is ``s * G`` whatever the number of processes, a resumed
run continues exactly, and 2 processes see the same global batches as 1. Each sample also gets
its own augmentation seed from ``(seed, position)`` (:func:`fgaseg.data.transforms.sample_seed`).
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import torch
from torch.utils.data import Dataset, Sampler

from fgaseg.data.transforms import TrainTransform, sample_seed


class StreamBatchSampler(Sampler):
    """Yields lists of ``(dataset index, stream position)`` for this rank, micro-batch by
    micro-batch, from optimizer step ``start_step`` to ``total_steps``."""

    def __init__(self, dataset_size: int, global_batch: int, *, grad_accum: int = 1,
                 rank: int = 0, world_size: int = 1, seed: int = 0, start_step: int = 0,
                 total_steps: int = 1) -> None:
        if dataset_size <= 0:
            raise ValueError("empty dataset")
        if global_batch % (grad_accum * world_size):
            raise ValueError(f"global batch {global_batch} is not divisible by "
                             f"grad_accum * world_size = {grad_accum * world_size}")
        self.n, self.global_batch, self.grad_accum = dataset_size, global_batch, grad_accum
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.micro_global = global_batch // grad_accum
        self.per_rank = self.micro_global // world_size
        self._perms: dict = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=generator)}
        return self._perms[epoch]

    def positions(self, step: int, micro: int) -> range:
        start = step * self.global_batch + micro * self.micro_global + self.rank * self.per_rank
        return range(start, start + self.per_rank)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            for micro in range(self.grad_accum):
                batch = []
                for position in self.positions(step, micro):
                    epoch, offset = divmod(position, self.n)
                    batch.append((int(self.permutation(epoch)[offset]), position))
                yield batch

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.grad_accum


class AugmentedDataset(Dataset):
    """Wraps a dataset so that item ``(index, position)`` is augmented with the generator
    seeded from ``(seed, position)``; returns ``(image, label, position)``."""

    def __init__(self, dataset: Dataset, transform: TrainTransform, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]):
        index, position = item
        image, label = self.dataset[index]
        generator = torch.Generator().manual_seed(sample_seed(self.seed, position))
        image, label = self.transform(image, label, generator)
        return image, label, position


def collate(batch):
    """Stack ``(image, label, position)`` items into ``(B, 3, H, W), (B, H, W), (B,)``."""
    images, labels, positions = zip(*batch)
    return torch.stack(images), torch.stack(labels), torch.tensor(positions)
