"""The exact OpenAI CLIP BPE tokenizer (via ``instant_clip_tokenizer``) with SOT/EOT and padding.

OpenAI's tokenizer cleans text with ``ftfy.fix_text`` and a double ``html.unescape``, collapses
whitespace, strips and lower-cases. ``instant_clip_tokenizer`` does the whitespace and case
handling; :func:`clean_text` adds the HTML unescaping and the parts of ``ftfy.fix_text`` that
change well-formed text (curly quotes, Latin ligatures, full-width forms, control characters,
NFC). ftfy's mojibake repair is not reproduced (it only changes wrongly decoded text).
"""

from __future__ import annotations

import html
import unicodedata
import warnings
from functools import lru_cache
from typing import List, Sequence, Union

import torch

SOT_TOKEN = 49406
EOT_TOKEN = 49407


@lru_cache(maxsize=1)
def _bpe():
    from instant_clip_tokenizer import Tokenizer

    return Tokenizer()


_QUOTES = {0x02BC: "'", **{c: "'" for c in range(0x2018, 0x201C)},
           **{c: '"' for c in range(0x201C, 0x2020)}}
_LIGATURES = {ord(c): unicodedata.normalize("NFKC", c) for c in "ĲĳŉǱǲǳǄǅǆǇǈǉǊǋǌﬀﬁﬂﬃﬄﬅﬆ"}
_WIDTH = {0x3000: " ", **{c: unicodedata.normalize("NFKC", chr(c)) for c in range(0xFF01, 0xFFF0)
                         if unicodedata.normalize("NFKC", chr(c)) != chr(c)}}
_CONTROL = {c: None for c in [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F,
                              *range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)]}
_TABLE = {**_QUOTES, **_LIGATURES, **_WIDTH, **_CONTROL}


def clean_text(text: str) -> str:
    """Text normalisation applied before BPE, as OpenAI's ``basic_clean`` for well-formed text."""
    text = html.unescape(text).translate(_TABLE)
    text = unicodedata.normalize("NFC", text)
    return html.unescape(html.unescape(text)).strip()


def encode(text: str) -> List[int]:
    """BPE ids of ``text`` without SOT/EOT."""
    return list(_bpe().encode(clean_text(text)))


def decode(ids: Sequence[int]) -> str:
    """Text of BPE ids (SOT/EOT/padding dropped)."""
    kept = [int(i) for i in ids if int(i) not in (0, SOT_TOKEN, EOT_TOKEN)]
    return _bpe().decode(kept).strip()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77) -> torch.Tensor:
    """Token ids ``(N, context_length)``: SOT, BPE ids, EOT, zero padding.

    Too-long texts are truncated keeping the final EOT, with a warning.
    """
    if isinstance(texts, str):
        texts = [texts]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    truncated = []
    for row, text in enumerate(texts):
        ids = [SOT_TOKEN, *encode(text), EOT_TOKEN]
        if len(ids) > context_length:
            truncated.append(text)
            ids = ids[: context_length - 1] + [EOT_TOKEN]
        result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    if truncated:
        warnings.warn(
            f"{len(truncated)} text(s) longer than the CLIP context of {context_length} tokens "
            f"were truncated, e.g. {truncated[0][:60]!r}",
            stacklevel=2,
        )
    return result
