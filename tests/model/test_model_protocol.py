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


@pytest.mark.parametrize("protocol", ["default", "official"])
def test_copies_of_a_class_get_identical_head_scores(model, protocol):
    # "n 3" three times, "n 9" twice, classes in chunks of 3 slices; no pruning, so that all
    # copies stay alive (a pre-selection or TopK boundary may legitimately keep one copy only).
    # Checked at the head's resolution: CPU bilinear resizing itself can round identical
    # channels differently.
    from fgaseg.model.official_protocol import official_head_scores
    from fgaseg.model.sliding_window import make_views

    names = [f"n {i}" for i in range(17)] + ["n 3", "n 9", "n 3"]
    image = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        text = model.encode_classes(names)
        views = make_views(image, model.sliding_plan())
        if protocol == "official":
            scores = official_head_scores(model, views, text, None, 3)
        else:
            scores = model._infer_low(views, text, None, 3)
    for copies in ([3, 17, 19], [9, 18]):
        for c in copies[1:]:
            assert torch.equal(scores[:, c], scores[:, copies[0]]), (copies, c)


@pytest.mark.parametrize("protocol", ["default", "official"])
def test_topk_at_least_the_classes_equals_no_topk_with_copies(model, protocol):
    # #16: k >= T skips TopK (bit-identical to topk=0); #15: copies of a class stay exact ties
    names = ["cat", "grass", "sky", "cat", "road"]
    images = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(6))
    off = model.segment_logits(images, names, topk=0, protocol=protocol)
    for k in (len(names), len(names) + 3):
        assert torch.equal(model.segment_logits(images, names, topk=k, protocol=protocol), off)
