"""PASCAL Context val -> ``VOC2010/annotations_detectron2/pc459_val`` (459 classes, 16-bit TIFF).

Needs ``ROOT/VOCdevkit/VOC2010/trainval/*.mat`` (from ``trainval.tar.gz``) and SciPy to read
them (``pip install scipy``). The val images are those of ``pascalcontext_val.txt`` (shipped
with fgaseg; a copy in VOC2010/ takes precedence). As the official script: ``LabelMap - 1`` in
uint16, so the unlabelled 0 wraps to 65535; every value >= 459 is ignored when reading.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from fgaseg.data.prepare.common import require_dir, run_jobs, save_atomic, simple_main
from fgaseg.errors import DatasetError


def load_label_map(path: Path) -> np.ndarray:
    """``LabelMap`` of a PASCAL Context ``.mat`` file (needs SciPy)."""
    try:
        import scipy.io
    except ImportError:
        raise DatasetError("reading the PASCAL Context .mat files needs SciPy: "
                           "pip install scipy") from None
    return scipy.io.loadmat(str(path))["LabelMap"]


def val_ids(voc: Path) -> List[str]:
    local = voc / "pascalcontext_val.txt"
    if local.is_file():
        text = local.read_text()
    else:
        text = resources.files("fgaseg.data").joinpath(
            "classnames", "pascalcontext_val.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def convert(source: Path, output: Path) -> None:
    label = np.asarray(load_label_map(source)).astype(np.int64) - 1
    save_atomic(label.astype(np.uint16), output)  # -1 -> 65535 (ignored)


def prepare(root: Path, progress: bool = True,
            workers: int = 1) -> None:
    voc = require_dir(Path(root) / "VOCdevkit" / "VOC2010", "extract VOCtrainval_03-May-2010.tar")
    mats = require_dir(voc / "trainval", "extract trainval.tar.gz into VOCdevkit/VOC2010")
    out_dir = voc / "annotations_detectron2" / "pc459_val"
    jobs = [(mats / f"{i}.mat", out_dir / f"{i}.tif") for i in val_ids(voc)
            if (mats / f"{i}.mat").is_file()]
    if not jobs:
        raise DatasetError(f"no val .mat files found in {mats}")
    run_jobs(jobs, convert, "pascal context-459 val", progress, workers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return simple_main(__doc__, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
