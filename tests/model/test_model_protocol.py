"""``FGASeg.segment_logits``: ``protocol`` and ``output_size`` keywords."""

import pytest
import torch
import torch.nn.functional as F

from fgaseg.errors import ConfigError
from fgaseg.model import FGASeg, fgaseg_tiny


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FGASeg(fgaseg_tiny(topk=2)).eval()


def test_default_output_size_resizes_the_logits(model):
    images = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    names = ["cat", "grass", "sky"]
    scores = model.segment_logits(images, names)
    resized = model.segment_logits(images, names, output_size=(23, 31))
    expected = F.interpolate(scores, size=(23, 31), mode="bilinear", align_corners=False)
    assert resized.shape == (2, 3, 23, 31) and torch.allclose(resized, expected, atol=1e-6)


def test_official_protocol_batches_image_by_image(model):
    images = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(2))
    names = ["cat", "grass", "sky"]
    both = model.segment_logits(images, names, protocol="official", sliding=True)
    one = model.segment_logits(images[1:], names, protocol="official", sliding=True)
    assert both.shape == (2, 3, 40, 52) and torch.allclose(both[1:], one, atol=1e-6)
    assert torch.isfinite(both).all()


def test_unknown_protocol(model):
    with pytest.raises(ConfigError, match="protocol must be one of"):
        model.segment_logits(torch.rand(1, 3, 8, 8), ["a"], protocol="mmseg")
