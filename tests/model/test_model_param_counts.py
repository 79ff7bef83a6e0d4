"""Parameter counts of the full presets (built on the meta device) against the official heads."""

import pytest
import torch

from fgaseg.model import FGASeg, get_preset


def count(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def vitb():
    with torch.device("meta"):
        return FGASeg(get_preset("fgaseg_vitb16_384")), FGASeg(get_preset("catseg_vitb16_384"))


def test_fgaseg_vitb_head_matches_official(vitb):
    fga, cat = vitb
    # official-head-costs.md: P2Tformer 1.31 M, alignment head 4.79 M, decoder 4.86 M incl. LCS 2.36 M
    assert round(count(fga.p2tformer) / 1e6, 2) == 1.31
    assert round(count(fga.alignment_head) / 1e6, 2) == 4.79
    assert round(count(fga.head) / 1e6, 2) == 4.86
    assert round(count(fga.head.Local_align) / 1e6, 2) == 2.36
    # CAT-Seg head 2.31 M
    assert round(count(cat.head) / 1e6, 2) == 2.31
    assert cat.p2tformer is None and cat.alignment_head is None
    # CLIP ViT-B/16 image tower with the native 14x14 positional embedding
    assert round(count(fga.clip.visual) / 1e6, 2) == 86.19


def test_state_dict_has_official_layout(vitb):
    fga, cat = vitb
    keys = set(fga.state_dict())
    for key in ("head.layers.1.swin_block.block_2.attn_mask", "head.layers.0.attention.padding_tokens",
                "head.head_auxi_2.weight", "head.conv_cat_decoder_2.weight", "head.Local_align.txt.weight",
                "p2tformer.cross_atten_text.0.multihead_attn.in_proj_weight", "p2tformer.gamma_text",
                "alignment_head.vis.1.1.running_mean", "alignment_head.txt.weight", "upsample2.weight"):
        assert key in keys, key
    assert fga.state_dict()["head.layers.1.swin_block.block_2.attn_mask"].shape == (4, 144, 144)
    cat_keys = {k for k in cat.state_dict() if k.startswith("head.")}
    assert not any(("conv2" in k) or ("Local_align" in k) or ("auxi" in k) or ("conv_cat" in k) for k in cat_keys)
