"""Class-name lists ("vocabularies") of the benchmarks, shipped with the package.

The JSON files in ``classnames/`` are byte-exact copies of the official CAT-Seg / FGA-seg
``datasets/*.json`` lists (see docs/datasets.md). Index ``i`` of a list is label id ``i``.
Synonyms share one string separated by ``", "`` (e.g. ``"building, edifice"`` in ADE-847);
the model uses the first synonym (``fgaseg.clip.first_synonym``). Names are kept byte-exact,
including ADE-150's stray ``"bed "``.

The prompt templates live in ``fgaseg.clip.templates`` (``PROMPT_TEMPLATES_SINGLE``,
``IMAGENET_TEMPLATES``) and are re-exported here for convenience.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Dict, List, Union

from fgaseg.clip.templates import IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE
from fgaseg.errors import ClassNamesError, reason

# vocabulary name -> file in fgaseg/data/classnames/
VOCABULARY_FILES: Dict[str, str] = {
    "coco171": "coco.json",
    "ade150": "ade150.json",
    "ade847": "ade847.json",
    "pc59": "pc59.json",
    "pc459": "pc459.json",
    "voc20": "voc20.json",
    "voc20b": "voc20b.json",
}
ALIASES = {"coco": "coco171", "coco-stuff": "coco171", "coco_stuff": "coco171", "a-150": "ade150",
           "a-847": "ade847", "pc-59": "pc59", "pc-459": "pc459", "pas-20": "voc20",
           "pas-20b": "voc20b"}

__all__ = ["VOCABULARY_FILES", "list_vocabularies", "load_vocabulary", "PROMPT_TEMPLATES_SINGLE",
           "IMAGENET_TEMPLATES"]


def list_vocabularies() -> List[str]:
    """Names accepted by :func:`load_vocabulary`."""
    return list(VOCABULARY_FILES)


def _read_packaged(filename: str) -> List[str]:
    text = resources.files("fgaseg.data").joinpath("classnames", filename).read_text("utf-8")
    return json.loads(text)


def _check(names: object, source: str) -> List[str]:
    if not isinstance(names, list) or not names:
        raise ClassNamesError(f"{source}: expected a non-empty list of class names")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ClassNamesError(f"{source}: every class name must be a non-blank string")
    return list(names)


def load_vocabulary(name_or_path: Union[str, Path]) -> List[str]:
    """Class names of a shipped vocabulary or of a file.

    ``name_or_path``: one of ``coco171, ade150, ade847, pc59, pc459, voc20, voc20b`` (a few
    aliases such as ``coco`` or ``A-150`` work too), or a path to a ``.json`` file holding a
    list of strings, or a ``.txt`` file with one class name per line (blank lines skipped).
    """
    key = str(name_or_path).strip()
    canonical = ALIASES.get(key.lower(), key.lower())
    if canonical in VOCABULARY_FILES and not Path(key).is_file():
        return _read_packaged(VOCABULARY_FILES[canonical])
    path = Path(key).expanduser()
    if not path.is_file():
        raise ClassNamesError(
            f"unknown vocabulary '{key}': use one of {', '.join(VOCABULARY_FILES)} "
            "or a path to a .json / .txt file")
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClassNamesError(f"{path}: not valid JSON ({reason(exc)})") from None
        return _check(names, str(path))
    lines = [line.rstrip("\r\n") for line in path.read_text("utf-8").splitlines()]
    return _check([line for line in lines if line.strip()], str(path))
