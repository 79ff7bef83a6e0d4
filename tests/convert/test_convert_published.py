"""Published checkpoint names resolve to the CAT-Seg README's download links."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgaseg.convert import PUBLISHED, fetch_published, published_checkpoint
from fgaseg.errors import WeightsError


def test_names_match_the_catseg_readme_links():
    assert PUBLISHED["catseg-vitb16"].url == (
        "https://huggingface.co/spaces/hamacojr/CAT-Seg-weights/resolve/main/model_base.pth")
    assert PUBLISHED["catseg-vitl14-336"].url == (
        "https://huggingface.co/spaces/hamacojr/CAT-Seg-weights/resolve/main/model_large.pth")
    assert published_checkpoint("CatSeg-Base") is PUBLISHED["catseg-vitb16"]
    assert published_checkpoint("model_base.pth") is None


def test_fetch_uses_the_space_and_reports_failures_in_one_line(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(tmp_path / kwargs["filename"])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert fetch_published("catseg-large") == Path(tmp_path / "model_large.pth")
    assert calls[0]["repo_id"] == "hamacojr/CAT-Seg-weights" and calls[0]["repo_type"] == "space"

    def offline(**kwargs):
        raise OSError("no network\nsecond line")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsError) as exc:
        fetch_published("catseg-vitb16")
    assert "\n" not in str(exc.value) and "model_base.pth" in str(exc.value)
    with pytest.raises(WeightsError, match="unknown published checkpoint"):
        fetch_published("fgaseg-vitb16")
