"""Inferring the official architecture from key names and shapes alone."""

from __future__ import annotations

import pytest
import torch

from fgaseg.convert import infer_architecture
from fgaseg.errors import WeightsError

from official_keys import VARIANTS, official_state_dict_spec, swin_shift_mask


def _meta_state(name_or_variant):
    spec = official_state_dict_spec(name_or_variant)
    return {key: torch.empty(shape, device="meta") for key, shape in spec.items()}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_switch_is_recovered(name):
    v = VARIANTS[name]
    arch = infer_architecture(_meta_state(name))
    assert arch.family == v.family
    assert arch.clip_name == v.clip
    assert arch.clip_resolution == (384 if v.clip == "ViT-B/16" else 336)
    assert arch.guidance_layers == ((3, 7) if v.clip == "ViT-B/16" else (7, 15))
    assert arch.prompt_channels == v.prompt_channels
    assert arch.num_layers == v.num_layers
    assert arch.hidden_dim == v.hidden_dim
    assert arch.window_size == v.window_size and arch.feature_resolution == v.feature_resolution
    assert arch.pad_len == 256
    if v.family == "fgaseg":
        assert arch.decoder == v.decoder
        assert arch.fusion == v.fusion
        assert arch.p2t_layers == v.p2t_layers
        assert arch.kernel_size == v.kernel_size
        assert arch.projector_dim == (256 if v.clip == "ViT-B/16" else 384)
    else:
        assert (arch.fusion, arch.kernel_size, arch.p2t_layers) == (None, None, 0)


def test_eighty_templates_are_read_from_conv1():
    from official_keys import variant

    arch = infer_architecture(_meta_state(variant("catseg_vitb16", prompt_channels=80)))
    assert arch.prompt_channels == 80


def test_unknown_clip_geometry_is_rejected():
    state = _meta_state("catseg_vitb16")
    state["sem_seg_head.predictor.clip_model.visual.conv1.weight"] = torch.empty(768, 3, 32, 32, device="meta")
    state["sem_seg_head.predictor.clip_model.visual.positional_embedding"] = torch.empty(50, 768, device="meta")
    with pytest.raises(WeightsError, match="unsupported CLIP"):
        infer_architecture(state)


def test_missing_head_key_is_named():
    state = _meta_state("fgaseg_vitb16_fast_cat")
    del state["sem_seg_head.predictor.transformer.Local_align.txt.weight"]
    with pytest.raises(WeightsError, match="Local_align.txt.weight"):
        infer_architecture(state)


def test_swin_shift_mask_rule():
    mask = swin_shift_mask(24, 12, 6)
    assert mask.shape == (4, 144, 144)
    assert torch.all(mask[0] == 0)  # the top-left window lies in one region
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    # bottom-right window: 4 regions of 6x6 tokens, each token sees 36 tokens
    assert torch.all((mask[3] == 0).sum(-1) == 36)
