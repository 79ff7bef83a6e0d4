"""Names for the published official checkpoints, downloaded from the Hugging Face hub on demand.

``fgaseg convert catseg-vitb16 --out DIR`` (or ``fetch_published("catseg-vitb16")``) downloads
the CAT-Seg authors' file once into the Hugging Face cache (``huggingface_hub`` needed:
``pip install "fgaseg[hub]"``) and returns its local path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from fgaseg.errors import WeightsError, reason


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A published official checkpoint and where it lives on the hub."""

    name: str
    description: str
    repo_id: str
    filename: str
    repo_type: str = "model"  # the CAT-Seg files live in a Space

    @property
    def url(self) -> str:
        kind = {"space": "spaces/", "dataset": "datasets/"}.get(self.repo_type, "")
        return f"https://huggingface.co/{kind}{self.repo_id}/resolve/main/{self.filename}"


PUBLISHED: Dict[str, PublishedCheckpoint] = {
    "catseg-vitb16": PublishedCheckpoint(
        "catseg-vitb16", "CAT-Seg (B), CLIP ViT-B/16, trained on COCO-Stuff (CVPR 2024 release)",
        "hamacojr/CAT-Seg-weights", "model_base.pth", "space"),
    "catseg-vitl14-336": PublishedCheckpoint(
        "catseg-vitl14-336", "CAT-Seg (L), CLIP ViT-L/14@336px, trained on COCO-Stuff (CVPR 2024 release)",
        "hamacojr/CAT-Seg-weights", "model_large.pth", "space"),
}
ALIASES = {"catseg-base": "catseg-vitb16", "catseg-b": "catseg-vitb16",
           "catseg-large": "catseg-vitl14-336", "catseg-l": "catseg-vitl14-336"}


def published_checkpoint(name: str) -> Optional[PublishedCheckpoint]:
    """The published checkpoint called ``name`` (case-insensitive, aliases allowed), or None."""
    key = str(name).strip().lower()
    return PUBLISHED.get(ALIASES.get(key, key))


def fetch_published(name: str, cache_dir: Optional[str] = None) -> Path:
    """Local path of a published checkpoint, downloading it on first use."""
    entry = published_checkpoint(name)
    if entry is None:
        raise WeightsError(f"unknown published checkpoint {name!r}; known: {', '.join(PUBLISHED)}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(
            f"downloading {entry.name} needs huggingface_hub (pip install \"fgaseg[hub]\"), "
            f"or download {entry.url} yourself"
        ) from None
    try:
        path = hf_hub_download(repo_id=entry.repo_id, filename=entry.filename,
                               repo_type=entry.repo_type, cache_dir=cache_dir)
    except Exception as exc:  # offline, moved file, HTTP errors ...
        raise WeightsError(
            f"cannot download {entry.name} ({reason(exc)}); download {entry.url} yourself "
            "and pass the file"
        ) from None
    return Path(path)
