"""Decoding COCO run-length encoded masks without pycocotools (for PASCAL Context-59's JSON).

A mask is stored column-major as alternating run lengths of 0s and 1s (starting with 0s).
The compressed string form packs each count into 5-bit groups (``chr(48 + bits)``, bit 0x20 =
"more groups follow", 0x10 of the last group = sign) and, from the third count on, stores the
difference to the count two places before (pycocotools' ``rleToString``/``rleFrString``).
"""

from __future__ import annotations

from typing import List, Union

import numpy as np


def counts_from_string(text: str) -> List[int]:
    """Compressed RLE string -> run lengths."""
    counts: List[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # negative: sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode(rle: dict) -> np.ndarray:
    """``{"size": [h, w], "counts": str | list}`` -> uint8 mask ``(h, w)``."""
    height, width = (int(v) for v in rle["size"])
    counts: Union[str, bytes, list] = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = counts_from_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != height * width:
        raise ValueError(f"RLE covers {sum(runs)} pixels, expected {height * width}")
    values = np.zeros(len(runs), dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T  # column-major
