"""The exact OpenAI CLIP BPE tokenizer (via ``instant_clip_tokenizer``) with SOT/EOT and padding.

OpenAI's tokenizer cleans text with ``ftfy.fix_text`` and a double ``html.unescape``, collapses
whitespace, strips and lower-cases. ``instant_clip_tokenizer`` does the whitespace and case
handling; we add the HTML unescaping and NFC normalisation (the part of ``ftfy.fix_text`` that
matters for well-formed text; mojibake repair is not reproduced).
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


def clean_text(text: str) -> str:
    """Text normalisation applied before BPE (HTML entities, NFC)."""
    text = html.unescape(html.unescape(text))
    return unicodedata.normalize("NFC", text).strip()


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
