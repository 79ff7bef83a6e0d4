"""The one rule for commands that write files: existing outputs are refused before any work,
unless ``--overwrite`` (alias ``--force``) is given. See docs/usage.md, "Existing outputs"."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

from fgaseg.errors import ConfigError


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite`` / ``--force`` (same flag, ``args.overwrite``): replace ``what``."""
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help=f"replace {what} (without it, existing outputs are refused "
                             "before anything is done)")


def refuse_existing(paths: Iterable[Path], option: str) -> None:
    """ConfigError naming the first of ``paths`` that exists (and how many do)."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more output file(s))" if len(existing) > 1 else ""
        raise ConfigError(f"{existing[0]} already exists{more}; pass --overwrite to replace "
                          f"it, or choose another {option}")


def prepare_out_dir(out_dir: Path, option: str = "--out") -> None:
    """Create the output folder ``out_dir``; ConfigError (one line) if it is a file or cannot be made."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{option} {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out_dir} ({exc.strerror or exc})") from None
