"""Class-name encoding with prompt templates (template ensembling)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from fgaseg.clip.model import CLIP
from fgaseg.clip.templates import PROMPT_TEMPLATES_SINGLE
from fgaseg.clip.tokenizer import tokenize
from fgaseg.errors import ClassNamesError


def first_synonym(name: str) -> str:
    """CAT-Seg's rule: a class name ``"a, b, c"`` is prompted with its first synonym ``a``."""
    return name.split(", ")[0].strip()


def encode_class_names(
    clip: CLIP,
    names: Sequence[str],
    templates: Optional[Sequence[str]] = None,
    average: bool = False,
) -> torch.Tensor:
    """L2-normalised text embeddings ``(N, P, D)``, or ``(N, D)`` with ``average``.

    Each name fills every template (``"{}"`` placeholder); with ``average`` the P embeddings
    of a name are averaged and re-normalised (CLIP's template ensembling). Gradients flow
    unless the caller disables them.
    """
    names = list(names)
    templates = list(templates) if templates is not None else list(PROMPT_TEMPLATES_SINGLE)
    if not names:
        raise ClassNamesError("the list of class names is empty")
    blank = [repr(n) for n in names if not isinstance(n, str) or not n.strip()]
    if blank:
        raise ClassNamesError(f"class names must be non-empty strings, got {blank[0]}")
    if not templates or any("{}" not in t for t in templates):
        raise ClassNamesError("every prompt template must contain a '{}' placeholder")
    prompts = [t.format(first_synonym(n)) for n in names for t in templates]
    token_ids = tokenize(prompts, context_length=clip.context_length).to(clip.device)
    embeddings = clip.encode_text(token_ids)
    embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
    embeddings = embeddings.reshape(len(names), len(templates), -1)
    if average:
        embeddings = embeddings.mean(dim=1)
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
    return embeddings
