import pytest
from fgaseg.errors import WeightsError
from fgaseg.model.pretrained import resolve_source
import fgaseg.convert.published as pub

def test_published_name_goes_through_fetch(monkeypatch):
    calls = []
    def fake(name, cache_dir=None):
        calls.append(name); raise WeightsError("offline")
    monkeypatch.setattr(pub, "fetch_published", fake)
    with pytest.raises(WeightsError):
        resolve_source("catseg-vitb16")
    assert calls == ["catseg-vitb16"]
