"""``protocol="official"`` gives the official code's final probabilities; TopK and pre-selection
pick the official code's classes, ties included.

The reference (``official_reference``) rewrites the official meta-architecture (single view with
padding to 32, sliding window with unfold / fold) and ``Decoder_fast``'s inference (per-view
pre-selection, argsort TopK shared by position, probabilities with 0 for pruned classes, second
sigmoid) from the official names. Tiny geometry (8x8 tokens, window 64 / resize 96, pad_len 32,
TopK 2 so that all three pruning stages remove classes).
"""

from __future__ import annotations

import pytest
import torch

from fgaseg.convert.official import ours_to_official
from fgaseg.model import FGASeg
from fgaseg.model.config import catseg_tiny, fgaseg_tiny
from fgaseg.model.cost_volume import preselect_classes
from fgaseg.model.official_protocol import check_protocol
from fgaseg.model.topk import topk_class_mask

from official_reference import (
    reference_preselect,
    reference_single_view,
    reference_sliding_window,
    reference_valid_idx,
)

_CONSTANT = ("attn_mask", "running_mean", "running_var", "num_batches_tracked")


def _tied(shape, seed: int) -> torch.Tensor:
    """Scores with exact ties (few distinct values, duplicated class rows) and near-ties (1 ulp)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, shape, generator=g).float()
    x[:, 5] = x[:, 2]  # a duplicated class (e.g. a repeated class name): ties everywhere
    ulp = torch.nextafter(x[:, 7], torch.full_like(x[:, 7], 10.0))
    x[:, 7] = ulp  # just above the value of class 7: near-ties with classes of the same value
    x[:, 8] = torch.nextafter(x[:, 1], torch.full_like(x[:, 1], -10.0))
    return x


@pytest.mark.parametrize("k", [1, 2, 3, 5, 11])
def test_topk_keeps_the_official_classes_with_ties_and_near_ties(k):
    for seed in range(6):
        aux = _tied((3, 12, 4, 5), seed)
        official = reference_valid_idx(aux, k)[0]
        assert torch.equal(topk_class_mask(aux, k), official), f"seed {seed}"
    # a single pixel with a three-way tie at the boundary: the official argsort keeps the first
    # two of the tied classes (a topk-based rule picks others on CPU)
    aux = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 0.0]).view(1, 6, 1, 1)
    assert torch.equal(topk_class_mask(aux, 2), reference_valid_idx(aux, 2)[0])


def test_preselection_is_the_official_call_order_included():
    for seed in range(4):
        cost = _tied((2, 40, 3, 3), seed).unsqueeze(1)  # (B, P=1, T, h, w)
        assert torch.equal(preselect_classes(cost, 32), reference_preselect(cost, 32))


def _random_tiny(config, seed: int):
    """FGASeg with every head / P2T tensor random (non-degenerate aux maps) and its official dict."""
    torch.manual_seed(seed)
    model = FGASeg(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.startswith("clip.") or name.endswith(_CONSTANT) or not value.is_floating_point():
                continue
            value.add_(torch.randn(value.shape, generator=g) * 0.1)
    official = {ours_to_official(k): v.clone() for k, v in model.state_dict().items()}
    return model, official


_NAMES = [f"thing {i}" for i in range(38)] + ["thing 3", "thing 9"]  # 40 > pad_len 32, duplicates


@pytest.mark.slow
@pytest.mark.parametrize("family,decoder", [("fgaseg", "fast"), ("fgaseg", "plain"), ("catseg", "plain")])
@pytest.mark.parametrize("num_classes", [5, 40])
def test_official_protocol_matches_the_official_meta_architecture(family, decoder, num_classes):
    preset = fgaseg_tiny if family == "fgaseg" else catseg_tiny
    config = preset(decoder_mode=decoder, topk=2 if decoder == "fast" else None)
    model, official = _random_tiny(config, seed=7 + num_classes)
    names = _NAMES[:num_classes] if num_classes < 40 else _NAMES
    g = torch.Generator().manual_seed(3)
    head = dict(family=family, fast=decoder == "fast", resolution=64, guidance_layers=(1, 2), p2t_heads=4,
                kernel=3, num_layers=2, pad_len=32, window=4, heads=2)
    if decoder == "fast":
        head["topk"] = 2
    else:
        head["fusion"] = "cat"
    with torch.no_grad():
        text = model.encode_classes(names)
        cases = [(torch.rand(3, 50, 70, generator=g), None, False),
                 (torch.rand(3, 20, 30, generator=g), (41, 37), False),  # smaller than the head output
                 (torch.rand(3, 50, 70, generator=g), None, True),
                 (torch.rand(3, 90, 60, generator=g), (45, 31), True)]
        for image, out_size, sliding in cases:
            size = out_size or tuple(image.shape[-2:])
            ours = model.segment_logits(image[None], names, sliding=sliding, protocol="official",
                                        output_size=out_size)[0].sigmoid()
            if sliding:
                ref = reference_sliding_window(official, image, text, out_size=size, crop=64, overlap=0.5,
                                               out_res=96, **head)
            else:
                ref = reference_single_view(official, image, text, out_size=size, **head)
            assert ours.shape == ref.shape == (num_classes, *size)
            err = (ours - ref).abs().max().item()
            assert err <= 1e-5, f"sliding={sliding} size={size}: max prob error {err:.3g}"


def test_unknown_protocol_is_a_one_line_error():
    from fgaseg.errors import ConfigError

    assert check_protocol("official") == "official"
    with pytest.raises(ConfigError, match="protocol must be one of default, official"):
        check_protocol("detectron2")
