"""Class-name lists from users: parsing and validation shared by the API, CLI, web demo and export.

Rules (documented in docs/usage.md):

- a string is split on commas (``"cat, grass,sky"`` -> ``["cat", "grass", "sky"]``); for names
  that contain commas (synonyms such as ``"building, edifice"``) use a list or a class file;
- each name is stripped of surrounding whitespace; a blank name is a ClassNamesError;
- duplicates are a ClassNamesError: CLIP's tokenizer lower-cases and collapses whitespace, so
  ``"Cat"`` and ``"cat "`` are the same prompt and would split one class's pixels between
  two labels; the check uses the same normalisation;
- any Unicode is fine; very long names are truncated (with a warning) by the tokenizer.

Class files: a JSON array of strings, or plain text with one name per line (blank lines and
lines starting with ``#`` are skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Union

from fgaseg.errors import ClassNamesError

ClassNames = Union[str, Iterable[str]]


def parse_class_names(classes: ClassNames, *, allow_duplicates: bool = False) -> list[str]:
    """Validate `classes` (a comma-separated string or a sequence of names).

    Returns the stripped names in order. Raises ClassNamesError (one line) for an empty list,
    a blank name, a non-string entry, or (unless `allow_duplicates`) a repeated name.
    """
    if classes is None:
        raise ClassNamesError("no class names given")
    if isinstance(classes, str):
        raw = classes.split(",")
        if not classes.strip():
            raise ClassNamesError("the class list is empty; give names like 'cat, grass, sky'")
    else:
        try:
            raw = list(classes)
        except TypeError:
            raise ClassNamesError(f"class names must be a string or a list of strings, "
                                  f"not {type(classes).__name__}") from None
    if not raw:
        raise ClassNamesError("the class list is empty; give names like 'cat, grass, sky'")
    names: list[str] = []
    seen: dict[str, int] = {}
    for position, name in enumerate(raw, start=1):
        if not isinstance(name, str):
            raise ClassNamesError(f"class name #{position} is a {type(name).__name__}, "
                                  "not a string")
        name = name.strip()
        if not name:
            raise ClassNamesError(f"class name #{position} of {len(raw)} is blank")
        key = _prompt_key(name)
        if key in seen and not allow_duplicates:
            raise ClassNamesError(f"class name {name!r} appears twice (#{seen[key]} and "
                                  f"#{position}); names must be distinct")
        seen.setdefault(key, position)
        names.append(name)
    return names


def _prompt_key(name: str) -> str:
    """What CLIP's tokenizer sees: lower case, single spaces."""
    return " ".join(name.lower().split())


def read_class_file(path: Union[str, Path]) -> list[str]:
    """Read a JSON list or a one-name-per-line text file and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ClassNamesError(f"{path}: class file not found") from None
    except IsADirectoryError:
        raise ClassNamesError(f"{path}: is a folder, not a class file") from None
    except UnicodeDecodeError:
        raise ClassNamesError(f"{path}: class file is not UTF-8 text") from None
    except OSError as exc:
        raise ClassNamesError(f"{path}: cannot read class file ({exc.strerror})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClassNamesError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(names, list):
            raise ClassNamesError(f"{path}: expected a JSON list of class names")
    else:
        names = [line for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ClassNamesError(f"{path}: class file has no names")
    try:
        return parse_class_names(names)
    except ClassNamesError as exc:
        raise ClassNamesError(f"{path}: {exc}") from None


def vocabulary_class_names(name: str) -> list[str]:
    """A named benchmark vocabulary (``ade150``, ``pc59``, ...) via ``fgaseg.data``."""
    try:
        from fgaseg.data import load_vocabulary
    except ImportError:
        raise ClassNamesError("named vocabularies need fgaseg.data, which is not available "
                              "in this build; use --classes or --classes-file") from None
    try:
        names = load_vocabulary(name)
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise ClassNamesError(f"unknown vocabulary {name!r} ({exc})") from None
    # benchmark lists keep their order and label ids, even if a name repeats
    return parse_class_names(list(names), allow_duplicates=True)
