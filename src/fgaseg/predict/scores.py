"""`ClassScores`: per-class score maps in which the classes the model pruned share one map.

With class pre-selection and TopK, FGAseg gives all but a few dozen of T classes the same
constant score. Storing and resizing T full-size maps made post-processing of 2000 classes on a
3000x2000 photo take minutes and gigabytes (issue #16). Here only the distinct maps are kept:
the live classes plus one representative, the lowest-index pruned class, whose map every other
unlisted class shares. Because the representative has the lowest index of its group, argmax
over the stored maps in class order equals argmax over all T maps, ties included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

#: Bound on T * rows * W floats of the dense computation the label map used to be; below it the
#: labels come from one ``F.interpolate`` call, above it from ``grid_sample`` where classes can
#: win (`_cellwise_argmax`). The switch depends on T (not on the stored maps) so the labels
#: stay those of the dense computation.
UPSAMPLE_BUDGET = 16_000_000

#: Margin of the candidate bounds, relative to the scores' magnitude: 64 float32 ulps, far
#: more than the few roundings of one bilinear value.
_BOUND_MARGIN = 2.0 ** -18
_TINY = 2.0 ** -120  # absolute margin for scores near float32's subnormal range
#: How far (relative to the source size) grid_sample's source position may be from the exact
#: one: 4 float32 ulps of any position in [0, src), for a build with or without fused
#: multiply-adds (see `_sample_cells`).
_POSITION_SLACK = 2.0 ** -21
_BAND_ELEMENTS = 1 << 21  # floats per band of temporaries (a few MiB: cache-friendly)


@dataclass
class ClassScores:
    """Score maps of ``num_classes`` classes, stored for ``classes`` only.

    Attributes:
        values: float ``(K, h, w)``, the maps of ``classes``.
        classes: int64 ``(K,)``, ascending class indices.
        num_classes: T.
        shared: position in ``classes`` of the map every unlisted class has (None when all T
            are stored); it must be the lowest-index class of that group.
    """

    values: torch.Tensor
    classes: torch.Tensor
    num_classes: int
    shared: Optional[int] = None

    def __post_init__(self) -> None:
        K = self.values.shape[0]
        if self.values.ndim != 3 or self.classes.shape != (K,):
            raise ValueError(f"values (K, h, w) and classes (K,) disagree: "
                             f"{tuple(self.values.shape)} vs {tuple(self.classes.shape)}")
        if (K < self.num_classes) != (self.shared is not None):
            raise ValueError("shared must name the group map exactly when classes are left out")
        if K > 1 and not bool((self.classes[1:] > self.classes[:-1]).all()):
            raise ValueError("classes must be ascending and distinct")
        if self.shared is not None:
            listed = torch.zeros(self.num_classes, dtype=torch.bool)
            listed[self.classes.cpu()] = True
            listed[int(self.classes[self.shared])] = False
            first_unlisted = int((~listed).nonzero()[0])
            if first_unlisted != int(self.classes[self.shared]):
                raise ValueError("the shared map must belong to the lowest-index unlisted class")

    @classmethod
    def from_dense(cls, scores: torch.Tensor) -> "ClassScores":
        """All T maps of ``scores (T, h, w)`` stored."""
        return cls(scores, torch.arange(scores.shape[0]), scores.shape[0])

    @classmethod
    def from_dense_shared(cls, scores: torch.Tensor) -> "ClassScores":
        """``scores (T, h, w)`` with the largest group of bit-identical maps stored once (for
        scores computed densely, e.g. the official protocol, whose pruned classes are not marked
        by one constant); ``to_dense()`` gives ``scores`` back bit for bit."""
        T = scores.shape[0]
        if T < 2 or scores.numel() == 0:
            return cls.from_dense(scores)
        flat = scores.reshape(T, -1)
        low, high = torch.aminmax(flat, dim=1)
        prints = torch.stack([low, high, flat.sum(dim=1, dtype=torch.float64).to(low.dtype),
                              flat[:, 0], flat[:, -1]], dim=1)  # equal maps, equal prints
        _, group, counts = torch.unique(prints, dim=0, return_inverse=True, return_counts=True)
        if int(counts.max()) < 2:
            return cls.from_dense(scores)
        candidates = (group == int(counts.argmax())).nonzero().flatten()
        ref = int(candidates[0])  # lowest index of the group: ties of argmax stay the same
        same = torch.zeros(T, dtype=torch.bool, device=scores.device)
        same[candidates] = (flat[candidates] == flat[ref]).all(dim=1)
        if int(same.sum()) < 2:
            return cls.from_dense(scores)
        stored = ~same
        stored[ref] = True
        classes = stored.nonzero().flatten()
        shared = int((classes == ref).nonzero()[0])
        return cls(scores[classes], classes.cpu(), T, shared)

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the stored maps."""
        return int(self.values.shape[1]), int(self.values.shape[2])

    def cpu(self) -> "ClassScores":
        """The same scores as float32 on the CPU."""
        return ClassScores(self.values.to("cpu", torch.float32), self.classes.to("cpu"),
                           self.num_classes, self.shared)

    def positions(self, indices: Sequence[int]) -> torch.Tensor:
        """Position in ``values`` of the map of each class index."""
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_classes):
            raise IndexError(f"class index out of range 0..{self.num_classes - 1}")
        classes = self.classes.to("cpu")
        found = torch.searchsorted(classes, index).clamp(max=len(classes) - 1)
        listed = classes[found] == index
        if self.shared is not None:
            found = torch.where(listed, found, torch.full_like(found, self.shared))
        return found

    def maps(self, indices: Sequence[int]) -> torch.Tensor:
        """``(n, h, w)`` maps of the given class indices."""
        return self.values[self.positions(indices).to(self.values.device)]

    def to_dense(self) -> torch.Tensor:
        """All T maps ``(T, h, w)`` (T x h x w floats: large for many classes)."""
        if self.shared is None:
            return self.values
        out = self.values[self.shared].expand(self.num_classes, *self.size).clone()
        out[self.classes.to(out.device)] = self.values
        return out

    def argmax(self) -> torch.Tensor:
        """Class index ``(h, w)`` of the highest score (lowest index among ties)."""
        return self.classes.to(self.values.device)[self.values.argmax(0)]

    def upsampled_argmax(self, size: tuple[int, int],
                         budget: int = UPSAMPLE_BUDGET) -> torch.Tensor:
        """argmax over classes of the maps bilinearly resized to ``size (H, W)``.

        Same labels as ``F.interpolate(dense[None], size, mode="bilinear").argmax(1)[0]`` over
        all T maps (for ``T * H * W > budget`` as the former row bands of ``grid_sample``).
        """
        height, width = size
        classes = self.classes.to(self.values.device)
        if self.num_classes * height * width <= budget:
            # small: all T maps at once, as before (F.interpolate rounds differently depending
            # on how many channels it gets, and labels must not change with the storage)
            scores = F.interpolate(self.to_dense()[None], size=size, mode="bilinear",
                                   align_corners=False)[0]
            return scores.argmax(0)
        return _cellwise_argmax(self.values, classes, size)


def _sample_cells(out: int, src: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid coordinates of ``out`` output positions along one axis and the source cells they
    can read from.

    Returns ``coords (out,)``, float32 in (-1, 1) exactly as the former dense bands passed them
    to ``grid_sample`` (so sampled values are bit-identical), and ``first, last (out,)``: the
    lowest and highest source cell (cell ``i`` lies between source positions ``i`` and
    ``min(i + 1, src - 1)``) that ``grid_sample`` may use. ``grid_sample`` computes the source
    position ``((g + 1) * src / 2 - 0.5)`` in float32, with or without a fused multiply-add
    depending on the build, and clamps it to [0, src - 1]; both roundings stay within a few
    float32 ulps of the exact value, so only positions that close to a source position can
    fall into either neighbouring cell, and they get both (``first < last``).
    """
    coords = (torch.arange(out, dtype=torch.float32) + 0.5) / out * 2 - 1
    shifted = (coords.double() + 1).float().double()  # g + 1, rounded as grid_sample does
    exact = shifted * (src / 2) - 0.5  # exact in float64 (a float32 times a half-integer)
    slack = src * _POSITION_SLACK
    first = (exact - slack).clamp(0, src - 1).floor().long()
    last = (exact + slack).clamp(0, src - 1).floor().long()
    return coords, first, last


@dataclass
class _CellCandidates:
    """Which classes can win in each source cell (`_cell_candidates`).

    Attributes:
        ref: int64 ``(h, w)``, position of the reference class r of each cell (a candidate).
        contested: bool ``(h, w)``, whether another class is a candidate too.
        table: bool ``(n + 1, K)``, the candidates of the n contested cells in row order, then
            an empty row (only contested cells get one: ``h * w * K`` bools would be large).
        row: int64 ``(h * w,)``, each cell's row in ``table`` (the empty row if uncontested).
    """

    ref: torch.Tensor
    contested: torch.Tensor
    table: torch.Tensor
    row: torch.Tensor

    def of(self, cells: torch.Tensor) -> torch.Tensor:
        """``(n, K)`` bool candidates of the cells ``(n,)`` (flat indices)."""
        out = self.table.index_select(0, self.row[cells])
        out.scatter_(1, self.ref.flatten()[cells][:, None], True)
        return out


def _cell_candidates(values: torch.Tensor, scale: torch.Tensor) -> _CellCandidates:
    """Which classes can win where, per source cell: cell ``(i, j)`` is the square between
    source pixels ``(i, j)`` and ``(i + 1, j + 1)`` (clamped at the border).

    Inside a cell every bilinear value is a convex combination of the cell's four corner
    values, with weights shared by all classes; so is the difference of two classes. Take as
    reference r a class with the highest corner sum (the likely winner): class c can beat r
    somewhere only if ``c - r`` is non-negative at one of the corners. ``grid_sample`` rounds
    its weights, products and sums, so the test keeps a margin of 64 float32 ulps of the two
    classes' magnitudes ``scale (K,)`` (max |score| per class). Computed in bands of rows so
    that the temporaries stay small.
    """
    K, h, w = values.shape
    device = values.device
    ref = torch.empty((h, w), dtype=torch.int64, device=device)
    contested = torch.empty((h, w), dtype=torch.bool, device=device)
    tables = []
    positions = torch.arange(K, dtype=values.dtype, device=device)[:, None, None]
    own_margin = (_BOUND_MARGIN * scale)[:, None, None]  # (K, 1, 1)
    rows = max(1, _BAND_ELEMENTS // (K * (w + 1)))
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        band = values[:, top:bottom + 1]
        if bottom == h:  # the last cell row has both its corner rows on the last source row
            band = torch.cat([band, band[:, -1:]], dim=1)
        band = torch.cat([band, band[:, :, -1:]], dim=2)  # (K, b + 1, w + 1), likewise columns
        corners = (band[:, :-1, :-1], band[:, :-1, 1:], band[:, 1:, :-1], band[:, 1:, 1:])
        total = corners[0] + corners[1] + corners[2] + corners[3]
        # any class with the highest sum will do (this is faster than argmax over dim 0)
        best = ((total == total.amax(0)) * positions).amax(0, keepdim=True).long()
        reach = corners[0] - corners[0].gather(0, best)  # (K, b, w): max over corners of c - r
        for corner in corners[1:]:
            torch.maximum(reach, corner - corner.gather(0, best), out=reach)
        reach += own_margin
        threshold = -(_BOUND_MARGIN * scale[best] + _TINY)  # (1, b, w): r's part of the margin
        chosen = reach >= threshold
        reach.scatter_(0, best, float("-inf"))  # does any class besides r pass?
        several = reach.amax(0) >= threshold[0]  # (b, w)
        tables.append(chosen[:, several].t())
        contested[top:bottom] = several
        ref[top:bottom] = best[0]
    tables.append(torch.zeros((1, K), dtype=torch.bool, device=device))
    table = torch.cat(tables)
    row = torch.full((h * w,), len(table) - 1, dtype=torch.int64, device=device)
    row[contested.flatten()] = torch.arange(len(table) - 1, device=device)
    return _CellCandidates(ref, contested, table, row)


def _runs(first: torch.Tensor, last: torch.Tensor,
          longest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output ranges ``starts, stops (n,)`` of runs of consecutive positions that read the
    same cells (``first``, ``last`` ``(out,)``, non-decreasing), at most ``longest`` long (the
    clamped border would otherwise make one long run, and every contested block is padded to
    the longest)."""
    out = len(first)
    new = torch.ones(out, dtype=torch.bool)
    new[1:] = (first[1:] != first[:-1]) | (last[1:] != last[:-1])
    group_start = torch.arange(out)[new][new.long().cumsum(0) - 1]  # (out,)
    starts = ((torch.arange(out) - group_start) % longest == 0).nonzero().flatten()
    stops = torch.cat([starts[1:], torch.tensor([out])])
    return starts, stops


def _pixel_ranges(starts: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    """``(n, size)`` output positions of each block, padded by repeating its last position
    (a repeated pixel is sampled and labelled twice, identically)."""
    size = int((stops - starts).max())
    return torch.minimum(starts[:, None] + torch.arange(size), stops[:, None] - 1)


def _resample_contested(values: torch.Tensor, candidates: torch.Tensor, ys: torch.Tensor,
                        xs: torch.Tensor) -> torch.Tensor:
    """Exact winners in blocks with several candidates.

    Args:
        values: ``(K, h, w)`` stored maps.
        candidates: ``(K, n)`` bool, the classes that may win each of the n blocks.
        ys, xs: ``(n, bh)``, ``(n, bw)`` grid coordinates of each block's pixels.
    Returns:
        ``(n, bh, bw)`` position in ``values`` of the winner at each pixel.

    Each class is sampled by ``grid_sample`` itself at exactly the pixel coordinates of the
    dense computation, only in the blocks where it is a candidate, so its values are the
    dense ones bit for bit. Classes go in ascending order and must beat the best so far
    strictly: ties go to the lowest index, as argmax does. The running best and winner of
    the blocks live in one tensor so each class reads and writes them with one row gather
    and one row scatter (much faster than per-element indexing).
    """
    n, bh, bw = len(ys), ys.shape[1], xs.shape[1]
    grid = torch.stack([xs[:, None, :].expand(n, bh, bw), ys[:, :, None].expand(n, bh, bw)],
                       dim=-1)  # (n, bh, bw, 2)
    # [:, 0]: best value so far; [:, 1]: 1 + position of its class (exact in float32 for
    # K < 2 ** 24). Scores are finite, so the first candidate always beats -inf.
    state = torch.zeros((n, 2, bh, bw), dtype=values.dtype, device=values.device)
    state[:, 0] = float("-inf")
    for k in candidates.any(1).nonzero().flatten().tolist():
        blocks = candidates[k].nonzero().flatten()
        m = len(blocks)
        sampled = F.grid_sample(values[k][None, None],
                                grid.index_select(0, blocks).view(1, m * bh, bw, 2),
                                mode="bilinear", padding_mode="border",
                                align_corners=False).view(m, bh, bw)
        current = state.index_select(0, blocks)
        better = (sampled > current[:, 0]).to(values.dtype)
        torch.maximum(current[:, 0], sampled, out=current[:, 0])
        # classes come in ascending order, so "k + 1 where better" is the max of the two
        torch.maximum(current[:, 1], better.mul_(k + 1), out=current[:, 1])
        state.index_copy_(0, blocks, current)
    return state[:, 1].long() - 1


def _banded_argmax(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` position of the winner, every stored map through ``grid_sample`` in bands
    of rows: the dense computation itself (used where the bounds do not hold, e.g. for
    non-finite scores)."""
    height, width = size
    K = values.shape[0]
    ys, _, _ = _sample_cells(height, values.shape[1])
    xs, _, _ = _sample_cells(width, values.shape[2])
    out = torch.empty(size, dtype=torch.int64, device=values.device)
    rows = max(1, _BAND_ELEMENTS // (K * width))
    for top in range(0, height, rows):
        grid = torch.stack(torch.meshgrid(ys[top:top + rows].to(values.device),
                                          xs.to(values.device), indexing="ij")[::-1], dim=-1)
        out[top:top + rows] = F.grid_sample(values[None], grid[None], mode="bilinear",
                                            padding_mode="border", align_corners=False)[0].argmax(0)
    return out


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (first or last row cell, first or last column)


def _union_of_cells(candidates: _CellCandidates, cells: list[torch.Tensor]) -> torch.Tensor:
    """``(n, K)``: candidates of n blocks, each the union over the (up to four) cells it may
    read; ``cells`` are 4 tensors ``(n,)`` of flat cell indices."""
    union = candidates.of(cells[0])
    for other in cells[1:]:
        if not torch.equal(other, cells[0]):  # some blocks may read another cell
            union |= candidates.of(other)
    return union


def _cellwise_argmax(values: torch.Tensor, classes: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
    """Labels ``(H, W)`` equal to the dense ``grid_sample`` argmax of ``values (K, h, w)``
    (class indices ``classes (K,)``), resampling each class only where it can win.

    The output is cut into blocks of pixels that read the same source cells (about
    ``(H / h) x (W / w)`` pixels each). Blocks in a cell with a single candidate
    (`_cell_candidates`) take its label without sampling; the others, and the rare blocks
    that may read two cells (`_sample_cells`), are resolved exactly by `_resample_contested`.
    """
    low, high = torch.aminmax(values.flatten(1), dim=1)  # no |values| copy
    scale = torch.maximum(-low, high)  # (K,) max |score|; inf or nan if any score is
    if values.dtype not in (torch.float32, torch.float64) or not bool(
            (scale <= torch.finfo(values.dtype).max / 8).all()):
        # half precision (the margin is in float32 ulps), non-finite scores (inf - inf) or
        # scores near overflow: the bounds say nothing, resample every class
        return classes[_banded_argmax(values, size)]
    height, width = size
    K, h, w = values.shape
    device = values.device
    ys, row_first, row_last = _sample_cells(height, h)
    xs, col_first, col_last = _sample_cells(width, w)
    candidates = _cell_candidates(values, scale)
    labels = classes[candidates.ref].index_select(0, row_first.to(device)) \
        .index_select(1, col_first.to(device))  # right wherever a cell is uncontested
    # blocks no taller / wider than an interior cell's span of output pixels
    row_starts, row_stops = _runs(row_first, row_last, -(-height // h))
    col_starts, col_stops = _runs(col_first, col_last, -(-width // w))
    rows = row_first[row_starts], row_last[row_starts]  # cells each block may read
    cols = col_first[col_starts], col_last[col_starts]
    contested = (candidates.contested.cpu()[rows[0]][:, cols[0]]
                 | (rows[0] != rows[1])[:, None] | (cols[0] != cols[1])[None, :])
    block_rows, block_cols = contested.nonzero(as_tuple=True)
    pixel_rows = _pixel_ranges(row_starts, row_stops)  # (nr, bh) output rows of each block row
    pixel_cols = _pixel_ranges(col_starts, col_stops)  # (nc, bw)
    # in chunks of blocks, so that the temporaries stay a few MiB whatever the image
    chunk = max(1, _BAND_ELEMENTS // (8 * pixel_rows.shape[1] * pixel_cols.shape[1]))
    for start in range(0, len(block_rows), chunk):
        chunk_rows = block_rows[start:start + chunk]
        chunk_cols = block_cols[start:start + chunk]
        union = _union_of_cells(candidates, [(rows[a][chunk_rows] * w + cols[b][chunk_cols])
                                             .to(device) for a, b in _CORNERS])
        block_pixel_rows = pixel_rows[chunk_rows]  # (n, bh)
        block_pixel_cols = pixel_cols[chunk_cols]  # (n, bw)
        winner = _resample_contested(values, union.t().contiguous(),
                                     ys[block_pixel_rows].to(device),
                                     xs[block_pixel_cols].to(device))
        labels[block_pixel_rows.to(device)[:, :, None],
               block_pixel_cols.to(device)[:, None, :]] = classes[winner]
    return labels

