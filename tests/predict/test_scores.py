"""ClassScores: compact per-class maps and the label map they give (issue #16.1)."""

import pytest
import torch
import torch.nn.functional as F

import fgaseg.predict.scores as scores_module
from fgaseg.predict.scores import ClassScores


def dense_banded_argmax(scores: torch.Tensor, size, rows: int) -> torch.Tensor:
    """The former dense label computation for large images: every class through grid_sample,
    in bands of `rows` output rows."""
    height, width = size
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    labels = torch.empty(size, dtype=torch.int64)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        ys = (torch.arange(top, bottom, dtype=torch.float32) + 0.5) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        band = F.grid_sample(scores[None], grid, mode="bilinear", padding_mode="border",
                             align_corners=False)
        labels[top:bottom] = band[0].argmax(0)
    return labels


def compact(dense: torch.Tensor, pruned: torch.Tensor) -> ClassScores:
    """Store the unpruned classes and the first pruned one (as the model does)."""
    keep = ~pruned
    first = int(pruned.nonzero()[0]) if pruned.any() else None
    if first is not None:
        keep[first] = True
    index = keep.nonzero().flatten()
    shared = None if index.numel() == len(pruned) else int((index == first).nonzero()[0])
    return ClassScores(dense[index], index, len(pruned), shared)


def random_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    T = int(torch.randint(2, 30, (), generator=g))
    h, w = (int(v) for v in torch.randint(1, 15, (2,), generator=g))
    H, W = (int(v) for v in torch.randint(1, 90, (2,), generator=g))
    dense = torch.randn(T, h, w, generator=g)
    if seed % 3 == 0:  # smooth maps with regions, as real scores have
        dense = F.interpolate(torch.randn(1, T, 3, 3, generator=g), size=(h, w),
                              mode="bilinear", align_corners=False)[0] * 5
    pruned = torch.rand(T, generator=g) < 0.6
    dense[pruned] = -100.0
    if seed % 2:  # exact ties between classes
        dense[:, : h // 2] = dense[0, : h // 2]
    return dense, pruned, (H, W)


@pytest.mark.parametrize("seed", range(40))
def test_compact_labels_equal_the_dense_computation(seed, monkeypatch):
    dense, pruned, size = random_case(seed)
    scores = compact(dense, pruned)
    assert torch.equal(scores.to_dense(), dense)
    assert torch.equal(scores.argmax(), dense.argmax(0))
    expected = F.interpolate(dense[None], size=size, mode="bilinear",
                             align_corners=False)[0].argmax(0)
    assert torch.equal(scores.upsampled_argmax(size, budget=10 ** 9), expected)
    # large-image path: small tiles, so that most tiles skip classes that cannot win there
    monkeypatch.setattr(scores_module, "_TILE", 5)
    expected = dense_banded_argmax(dense, size, rows=3)
    assert torch.equal(scores.upsampled_argmax(size, budget=0), expected)


def test_tiles_resample_only_classes_that_can_win(monkeypatch):
    # two classes own the left and right halves; 50 others score far lower everywhere
    dense = torch.full((52, 8, 16), -9.0)
    dense[:2] = -5.0
    dense[0, :, :8], dense[1, :, 8:] = 3.0, 3.0
    expected = dense_banded_argmax(dense, (64, 128), rows=7)
    resampled = []
    original = F.grid_sample

    def spy(source, grid, **kw):
        resampled.append(source.shape[1])
        return original(source, grid, **kw)

    monkeypatch.setattr(scores_module.F, "grid_sample", spy)
    monkeypatch.setattr(scores_module, "_TILE", 16)
    labels = ClassScores.from_dense(dense).upsampled_argmax((64, 128), budget=0)
    assert torch.equal(labels, expected)
    assert resampled and max(resampled) <= 2  # never all 52 classes


def test_maps_of_pruned_classes_are_the_shared_map():
    dense = torch.randn(6, 3, 4)
    dense[[1, 3, 4]] = -100.0
    scores = compact(dense, torch.tensor([False, True, False, True, True, False]))
    assert scores.values.shape[0] == 4 and scores.shared == 1
    assert torch.equal(scores.maps([4, 0, 3]), dense[[4, 0, 3]])
    with pytest.raises(IndexError):
        scores.maps([6])


def test_inconsistent_compact_scores_are_refused():
    values = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="ascending"):
        ClassScores(values, torch.tensor([2, 0]), 3, shared=1)
    with pytest.raises(ValueError, match="shared"):
        ClassScores(values, torch.tensor([0, 2]), 3)  # class 1 has no map
    with pytest.raises(ValueError, match="lowest-index"):
        ClassScores(values, torch.tensor([0, 2]), 4, shared=1)  # class 1 would differ from 2
