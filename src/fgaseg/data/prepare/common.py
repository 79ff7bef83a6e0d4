"""Shared helpers of the conversion scripts: resumable loops and atomic image writes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from fgaseg.errors import DatasetError

Job = Tuple[object, Path]  # (input, output file)


def save_atomic(array: np.ndarray, path: Path, fmt: Optional[str] = None,
                quality: Optional[int] = None) -> None:
    """Save an image array (uint8 / uint16) via a temporary file + rename.

    JPEGs use Pillow's default quality (75) unless ``quality`` is given, as the official
    preparation scripts (which call ``Image.save`` without options) do."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("TIFF" if path.suffix.lower() in (".tif", ".tiff") else
                  "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    tmp = path.with_name(f".{path.name}.tmp")
    image = Image.fromarray(array)
    image.save(tmp, fmt, **({"quality": quality} if quality is not None else {}))
    os.replace(tmp, path)


def run_jobs(jobs: Sequence[Job], convert: Callable[[object, Path], None], desc: str,
             progress: bool = True, workers: int = 1) -> Tuple[int, int]:
    """``convert(input, output)`` for every job whose output does not exist yet.

    Returns ``(converted, skipped)``. Outputs already present (from a previous, interrupted
    run) are skipped, so a conversion can be stopped and restarted at any time. ``workers > 1``
    converts in threads (image decoding / encoding releases the GIL).
    """
    todo = [job for job in jobs if not Path(job[1]).exists()]
    skipped = len(jobs) - len(todo)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="img")
        if skipped:
            bar.write(f"{desc}: {skipped} outputs already exist and are skipped")
    try:
        if workers <= 1:
            for source, output in todo:
                convert(source, Path(output))
                if bar is not None:
                    bar.update(1)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(lambda job: convert(job[0], Path(job[1])), todo):
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return len(todo), skipped


def require_dir(path: Path, hint: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path} not found: {hint}")
    return path


def lookup_table(mapping: dict, size: int, fill: int, dtype=np.uint8) -> np.ndarray:
    """Array ``lut`` with ``lut[k] = mapping[k]`` and ``fill`` elsewhere (fast relabelling)."""
    lut = np.full(size, fill, dtype=dtype)
    for key, value in mapping.items():
        lut[key] = value
    return lut


def read_array(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image)


def base_parser(description: str, default_root: Optional[str] = None) -> argparse.ArgumentParser:
    """``ROOT`` (default ``$DETECTRON2_DATASETS`` or ``./datasets``, or ``default_root``),
    ``--no-progress`` and ``--workers``."""
    parser = argparse.ArgumentParser(description=description)
    if default_root is None:
        parser.add_argument("root", nargs="?",
                            default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                            help="folder holding the datasets (default: $DETECTRON2_DATASETS "
                                 "or ./datasets)")
    else:
        parser.add_argument("root", nargs="?", default=default_root,
                            help=f"output folder (default: ./{default_root})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=4, help="conversion threads (default 4)")
    return parser


def main_wrapper(run: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
                 argv: Optional[Sequence[str]] = None) -> int:
    import sys

    from fgaseg.errors import FGASegError

    args = parser.parse_args(argv)
    try:
        run(args)
    except FGASegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def simple_main(doc: str, prepare: Callable[[Path, bool, int], None],
                argv: Optional[Sequence[str]] = None) -> int:
    """``main`` of a script whose only options are the :func:`base_parser` ones."""
    parser = base_parser(doc.splitlines()[0])
    return main_wrapper(lambda a: prepare(Path(a.root), not a.no_progress, a.workers), parser, argv)
