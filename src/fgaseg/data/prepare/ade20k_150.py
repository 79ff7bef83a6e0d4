"""ADE20K-150 (SceneParsing) -> ``ADEChallengeData2016/annotations_detectron2/validation``.

Needs ``ROOT/ADEChallengeData2016`` from ``ADEChallengeData2016.zip``. Labels are shifted by
one: 0 ("other") becomes 255 (ignore), class k (1..150) becomes k - 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fgaseg.data.prepare.common import (base_parser, main_wrapper, read_array, require_dir,
                                        run_jobs, save_atomic)


def convert(source: Path, output: Path) -> None:
    label = read_array(source)
    if label.dtype != np.uint8:
        raise ValueError(f"{source}: expected an 8-bit label map")
    save_atomic(label - np.uint8(1), output)  # uint8 wraps 0 -> 255


def prepare(root: Path, splits: Sequence[str] = ("validation",), progress: bool = True,
            workers: int = 1) -> None:
    base = Path(root) / "ADEChallengeData2016"
    for split in splits:
        source_dir = require_dir(base / "annotations" / split,
                                 "unzip ADEChallengeData2016.zip into the root folder")
        output_dir = base / "annotations_detectron2" / split
        jobs = [(p, output_dir / p.name) for p in sorted(source_dir.glob("*.png"))]
        run_jobs(jobs, convert, f"ade20k-150 {split}", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["validation"],
                        help="validation (default) and/or training")
    return main_wrapper(
        lambda a: prepare(Path(a.root), a.splits, not a.no_progress, a.workers), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
