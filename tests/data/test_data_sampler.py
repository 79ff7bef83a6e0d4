"""The deterministic sample stream: sharding, accumulation, resume, epochs."""

import torch

from fgaseg.data.sampler import AugmentedDataset, StreamBatchSampler, collate
from fgaseg.data.transforms import TrainTransform


def flat(sampler):
    return [pair for batch in sampler for pair in batch]


def test_ranks_and_accumulation_cover_the_single_process_stream():
    single = list(StreamBatchSampler(10, 8, seed=3, total_steps=4))
    assert all(len(b) == 8 for b in single)
    for world, accum in [(2, 1), (2, 2), (4, 2), (1, 4)]:
        shards = [list(StreamBatchSampler(10, 8, grad_accum=accum, rank=r, world_size=world,
                                          seed=3, total_steps=4)) for r in range(world)]
        for step in range(4):
            merged = []
            for micro in range(accum):
                for r in range(world):
                    merged += shards[r][step * accum + micro]
            assert sorted(merged) == sorted(single[step])  # same global batch, any split


def test_resume_continues_the_stream():
    full = flat(StreamBatchSampler(7, 4, seed=0, total_steps=6))
    resumed = flat(StreamBatchSampler(7, 4, seed=0, start_step=2, total_steps=6))
    assert resumed == full[8:]
    assert [p for _, p in full] == list(range(24))


def test_each_epoch_is_a_permutation_and_epochs_differ():
    stream = flat(StreamBatchSampler(6, 3, seed=1, total_steps=4))
    epochs = [[i for i, _ in stream[e * 6:(e + 1) * 6]] for e in range(2)]
    assert all(sorted(e) == list(range(6)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_augmented_dataset_depends_only_on_position():
    data = [(torch.rand(3, 12, 12), torch.randint(0, 3, (12, 12))) for _ in range(3)]
    wrapped = AugmentedDataset(data, TrainTransform(crop_size=8, min_size=0), seed=4)
    a = wrapped[(1, 17)]
    b = wrapped[(1, 17)]
    c = wrapped[(1, 18)]
    assert torch.equal(a[0], b[0]) and a[2] == 17
    assert not torch.equal(a[0], c[0])
    images, labels, positions = collate([a, c])
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 8, 8)
    assert positions.tolist() == [17, 18]
