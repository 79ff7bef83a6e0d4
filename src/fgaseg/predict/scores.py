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
#: labels come from one ``F.interpolate`` call, above it from ``grid_sample`` tiles. The switch
#: depends on T (not on the stored maps) so the labels stay those of the dense computation.
UPSAMPLE_BUDGET = 16_000_000

_TILE = 64  # output pixels per tile side in the large-image argmax
_BLOCK = 4  # source pixels per block side of the precomputed bounds


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
        return _tiled_argmax(self.values, classes, size)


def _source_range(start: int, stop: int, out: int, src: int) -> tuple[int, int]:
    """Source rows (inclusive) that bilinear output rows ``start..stop-1`` read, plus a margin
    of one row each side against rounding (align_corners=False, border clamping)."""
    lo = (start + 0.5) * src / out - 0.5
    hi = (stop - 0.5) * src / out - 0.5
    return max(0, int(lo // 1) - 1), min(src - 1, int(hi // 1) + 2)


def _cell_floor(values: torch.Tensor) -> torch.Tensor:
    """``(h, w)``: a lower bound of the best score anywhere inside the 2x2 source cell whose
    top-left corner is at each position (cells at the border repeat the last row / column).

    Inside a cell every class's bilinear value is one convex combination of its four corner
    values, with the same weights for all classes. So is the mean of the four classes that win
    the corners, and the best class scores at least that mean, hence at least its smallest
    corner value. (Inside one class's region this is that class's smallest corner; on a
    boundary it stays between the two winners instead of dropping to the loser's score.)
    """
    K, h, w = values.shape
    winner = values.argmax(0)
    rows = torch.arange(h, device=values.device)
    cols = torch.arange(w, device=values.device)
    corners = [(rows[:, None], cols[None]), (rows[:, None], (cols + 1).clamp(max=w - 1)[None]),
               ((rows + 1).clamp(max=h - 1)[:, None], cols[None]),
               ((rows + 1).clamp(max=h - 1)[:, None], (cols + 1).clamp(max=w - 1)[None])]
    winners = [winner[r, c] for r, c in corners]
    floor = None
    for r, c in corners:
        mean = sum(values[k, r, c] for k in winners) / 4
        floor = mean if floor is None else torch.minimum(floor, mean)
    return floor


def _tiled_argmax(values: torch.Tensor, classes: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Exact tiled ``grid_sample`` argmax that resamples only the classes that can win a tile.

    A bilinear value is a convex combination of its source neighbours, so within a tile class
    c scores at most its maximum over the tile's source patch, and the winner scores at least
    the smallest cell floor (`_cell_floor`) there. Classes whose maximum is below that floor
    (less a rounding margin) cannot win and are skipped; usually one or a few remain. They are
    resampled one at a time from views of the stored maps (``grid_sample`` gives each channel
    the same values however many it gets), lowest class first, so ties go to the lowest index.
    """
    height, width = size
    K, h, w = values.shape
    device = values.device
    # output pixel centres, computed as the former dense bands did (bit-identical samples)
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width * 2 - 1
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height * 2 - 1
    # per-block maxima / floors once, so that each tile's bounds are a few small reductions
    block = _BLOCK
    block_max = F.max_pool2d(values[None], block, ceil_mode=True)[0]
    block_floor = -F.max_pool2d(-_cell_floor(values)[None, None], block, ceil_mode=True)[0, 0]
    low, high = torch.aminmax(values)
    margin = 1e-5 * (1.0 + max(abs(float(low)), abs(float(high))))
    labels = torch.empty(size, dtype=torch.int64, device=device)
    for top in range(0, height, _TILE):
        bottom = min(height, top + _TILE)
        y0, y1 = (v // block for v in _source_range(top, bottom, height, h))
        for left in range(0, width, _TILE):
            right = min(width, left + _TILE)
            x0, x1 = (v // block for v in _source_range(left, right, width, w))
            upper = block_max[:, y0:y1 + 1, x0:x1 + 1].amax(dim=(1, 2))
            lower = block_floor[y0:y1 + 1, x0:x1 + 1].min()
            # float rounding can push an interpolated value a few ulps past its inputs
            candidates = (upper >= lower - margin).nonzero().flatten().tolist()
            if len(candidates) == 1:
                labels[top:bottom, left:right] = classes[candidates[0]]
                continue
            grid = torch.stack(torch.meshgrid(ys[top:bottom], xs[left:right],
                                              indexing="ij")[::-1], dim=-1)[None]
            best = best_index = None
            for c in candidates:
                sampled = F.grid_sample(values[c][None, None], grid, mode="bilinear",
                                        padding_mode="border", align_corners=False)[0, 0]
                if best is None:
                    best, best_index = sampled, torch.full_like(sampled, c, dtype=torch.int64)
                else:
                    better = sampled > best  # strictly: ties keep the lower class
                    best = torch.where(better, sampled, best)
                    best_index[better] = c
            labels[top:bottom, left:right] = classes[best_index]
    return labels
