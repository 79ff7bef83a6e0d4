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
    # large-image path, with bands of a few rows so that several bands are computed
    monkeypatch.setattr(scores_module, "_BAND_ELEMENTS", 64)
    expected = dense_banded_argmax(dense, size, rows=3)
    assert torch.equal(scores.upsampled_argmax(size, budget=0), expected)


def smooth(g: torch.Generator, T: int, h: int, w: int, scale: float = 1.0) -> torch.Tensor:
    """(T, h, w) smooth random maps, as a model's upsampled scores."""
    coarse = torch.randn(1, T, 3, 4, generator=g) * scale
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]


def ulp_steps(base: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`base` moved by `steps` float32 ulps (negative: down) element-wise."""
    out = base.clone()
    for _ in range(int(steps.abs().max())):
        up, down = steps > 0, steps < 0
        out = torch.where(up, torch.nextafter(out, torch.tensor(float("inf"))), out)
        out = torch.where(down, torch.nextafter(out, torch.tensor(float("-inf"))), out)
        steps = steps - up.long() + down.long()
    return out


def near_tie_case(seed: int, magnitude: float = 1.0, T: int = 6, h: int = 7, w: int = 9):
    """Classes that differ from one map by 0-2 float32 ulps per source pixel, and some exact
    copies: the dense argmax is decided by the rounding of the bilinear sums and by ties."""
    g = torch.Generator().manual_seed(seed)
    base = smooth(g, 1, h, w, magnitude)[0] + magnitude
    steps = torch.randint(-2, 3, (T, h, w), generator=g)
    steps[T // 2] = 0  # an exact copy of the base ...
    steps[T - 1] = 0  # ... and one more: exact ties everywhere between these two
    return ulp_steps(base.expand(T, h, w), steps)


SIZES = [(61, 47), (21, 27), (7, 9), (35, 45), (14, 18), (3, 5), (70, 90)]  # incl. x1, x3, x5, x10


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", SIZES)
def test_labels_at_float32_near_ties_equal_the_dense_computation(seed, size):
    dense = near_tie_case(seed)
    expected = dense_banded_argmax(dense, size, rows=5)
    assert len(expected.unique()) > 1  # the ties really are decided by rounding
    assert torch.equal(ClassScores.from_dense(dense).upsampled_argmax(size, budget=0),
                       expected)


@pytest.mark.parametrize("magnitude", [1e-30, 1e-3, 1e4, 1e30])
def test_near_ties_at_any_magnitude(magnitude):
    dense = near_tie_case(11, magnitude)
    expected = dense_banded_argmax(dense, (40, 50), rows=5)
    assert torch.equal(ClassScores.from_dense(dense).upsampled_argmax((40, 50), budget=0),
                       expected)


def test_the_rounding_margin_is_needed(monkeypatch):
    # class 0 is one ulp below class 1 at every source pixel: a bound without margin rules it
    # out everywhere, but bilinear rounding makes it tie with class 1 at some pixels, where
    # argmax picks class 0
    g = torch.Generator().manual_seed(3)
    base = smooth(g, 1, 7, 9)[0] + 2.0
    dense = torch.stack([ulp_steps(base, torch.full_like(base, -1, dtype=torch.long)), base])
    size = (61, 47)
    expected = dense_banded_argmax(dense, size, rows=5)
    scores = ClassScores.from_dense(dense)
    assert torch.equal(scores.upsampled_argmax(size, budget=0), expected)
    assert (expected == 0).any()
    monkeypatch.setattr(scores_module, "_BOUND_MARGIN", 0.0)
    monkeypatch.setattr(scores_module, "_TINY", 0.0)
    assert not torch.equal(scores.upsampled_argmax(size, budget=0), expected)


def test_classes_crossing_inside_cells_just_outside_the_margin():
    # classes 1.. are below class 0 by a little more / less than the bound's margin at all
    # corners, and others cross class 0 inside cells by a few ulps
    g = torch.Generator().manual_seed(5)
    base = smooth(g, 1, 6, 8)[0] + 3.0
    margin = scores_module._BOUND_MARGIN * 2 * float(base.abs().max())
    ramp = torch.linspace(-1, 1, 8)[None].expand(6, 8) * 4e-7  # crosses zero mid-image
    dense = torch.stack([base, base - 1.01 * margin, base - 0.99 * margin, base + ramp,
                         base - ramp, base - 1.01 * margin + ramp * 1e3])
    for size in [(37, 53), (18, 24)]:
        expected = dense_banded_argmax(dense, size, rows=4)
        assert torch.equal(ClassScores.from_dense(dense).upsampled_argmax(size, budget=0),
                           expected)


@pytest.mark.parametrize("slack", [2.0 ** -21, 0.05])  # 0.05: up to 0.3 cells
def test_blocks_that_may_read_two_cells_take_both_cells_candidates(slack, monkeypatch):
    # a wide slack makes many output rows / columns read either of two cells: they must get
    # the candidates of both (regions of different winners, so neighbouring cells differ)
    monkeypatch.setattr(scores_module, "_POSITION_SLACK", slack)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        dense = torch.randn(5, 6, 5, generator=g) * 3
        dense[3] = near_tie_case(seed, T=5, h=6, w=5)[0]  # and near-ties with class 4
        dense[4] = torch.nextafter(dense[3], torch.tensor(float("inf")))
        for size in [(18, 15), (13, 40), (33, 21)]:
            expected = dense_banded_argmax(dense, size, rows=5)
            assert torch.equal(ClassScores.from_dense(dense).upsampled_argmax(size, budget=0),
                               expected)


@pytest.mark.parametrize("out, src", [(61, 7), (21, 7), (35, 7), (7, 7), (3000, 640),
                                      (2000, 427), (9, 40), (1, 3), (5, 1)])
def test_sample_cells_contain_the_cell_grid_sample_reads(out, src):
    coords, first, last = scores_module._sample_cells(out, src)
    # one-hot columns: grid_sample gives column k's weight at each output position; the cell
    # it reads starts at the lowest column with a non-zero weight
    onehot = torch.eye(src)[:, None, None, :]  # (src, 1, 1, src)
    grid = torch.stack([coords, torch.zeros(out)], dim=-1)[None, None].expand(src, 1, out, 2)
    weights = F.grid_sample(onehot, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[:, 0, 0]  # (src, out)
    cell = (weights > 0).to(torch.uint8).argmax(0)
    assert bool(((first <= cell) & (cell <= last)).all())
    assert bool((last - first <= 1).all())


def test_probabilities_with_saturated_ties_and_subnormals():
    # the official protocol ranks sigmoid probabilities: many exact 1.0 ties, pruned classes
    # at sigmoid(-100) (a subnormal float32)
    g = torch.Generator().manual_seed(2)
    logits = smooth(g, 8, 6, 9, 30.0)
    logits[[1, 4]] = -100.0
    dense = logits.sigmoid()
    pruned = torch.zeros(8, dtype=torch.bool)
    pruned[[1, 4]] = True
    expected = dense_banded_argmax(dense, (41, 67), rows=6)
    assert torch.equal(compact(dense, pruned).upsampled_argmax((41, 67), budget=0), expected)


def test_non_finite_scores_fall_back_to_resampling_every_class():
    dense = smooth(torch.Generator().manual_seed(4), 4, 5, 6)
    dense[2, 1:3, 2:4] = float("inf")
    dense[3] = float("-inf")
    expected = dense_banded_argmax(dense, (23, 29), rows=4)
    assert torch.equal(ClassScores.from_dense(dense).upsampled_argmax((23, 29), budget=0),
                       expected)


def test_only_classes_that_can_win_are_resampled(monkeypatch):
    # two classes own the left and right halves; 50 others score far lower everywhere
    dense = torch.full((52, 8, 16), -9.0)
    dense[:2] = -5.0
    dense[0, :, :8], dense[1, :, 8:] = 3.0, 3.0
    expected = dense_banded_argmax(dense, (64, 128), rows=7)
    sampled = []  # (class map, number of points) per grid_sample call
    original = F.grid_sample

    def spy(source, grid, **kw):
        sampled.append((source, grid.shape[1] * grid.shape[2]))
        return original(source, grid, **kw)

    monkeypatch.setattr(scores_module.F, "grid_sample", spy)
    labels = ClassScores.from_dense(dense).upsampled_argmax((64, 128), budget=0)
    assert torch.equal(labels, expected)
    assert sampled and all(source.shape[1] == 1 for source, _ in sampled)
    maps = {int(source[0, 0, 0, 7] + 10 * source[0, 0, 0, 8]) for source, _ in sampled}
    assert maps <= {3 - 50, -5 + 30}  # only classes 0 and 1 (class 0: 3, -5; class 1: -5, 3)
    # only the blocks around the boundary column are resampled, not the whole image
    assert sum(points for _, points in sampled) < 64 * 128 / 4


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
