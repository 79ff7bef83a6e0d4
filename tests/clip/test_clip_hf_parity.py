"""Our CLIP vs transformers' CLIPModel holding the same (seeded random) weights."""

import time

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fgaseg.clip import build_clip, get_config, tokenize  # noqa: E402
from fgaseg.clip.key_mapping import from_hf, hf_config_dict, to_hf  # noqa: E402

TEXTS = ["a photo of a cat", "A photo of a traffic light in the scene", "café 😀", "x"]


def _hf_twin(model):
    """transformers' CLIPModel with our weights, converted by our key mapping."""
    with torch.device("meta"):  # skip transformers' random init: all weights are assigned
        hf = transformers.CLIPModel(transformers.CLIPConfig(**hf_config_dict(model.config)))
    missing, unexpected = hf.load_state_dict(to_hf(model.state_dict()), strict=False, assign=True)
    assert not unexpected
    assert all(key.endswith("position_ids") for key in missing)
    for name, buffer in list(hf.named_buffers()):  # position_ids: not weights, rebuild them
        owner, attr = name.rsplit(".", 1)
        assert attr == "position_ids", name
        setattr(hf.get_submodule(owner), attr,
                torch.arange(buffer.shape[-1]).expand(buffer.shape).clone())
    assert not any(p.is_meta for p in hf.parameters())
    return hf.eval()


def _compare(model, hf, image_size, batch=2, full=True):
    """Image (global and per-token) and, with ``full``, text embeddings agree within 1e-4."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size)
    ids = tokenize(TEXTS)
    with torch.no_grad():
        vision = hf.vision_model(pixel_values=images)
        hf_image = hf.visual_projection(vision.pooler_output)
        hf_tokens = hf.visual_projection(hf.vision_model.post_layernorm(vision.last_hidden_state))
        ours_dense = model.encode_image_dense(images, dense_last_block=False)
        assert (ours_dense.tokens - hf_tokens[:, 1:]).abs().max() < 1e-4
        assert (ours_dense.cls - hf_image).abs().max() < 1e-4
        if full:
            assert (model.encode_image(images) - hf_image).abs().max() < 1e-4
            hf_text = hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
            assert (model.encode_text(ids) - hf_text).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["tiny-B/16", "tiny-B/32"])
def test_reduced_configs_match_transformers(name):
    model = build_clip(name, seed=0).eval()
    _compare(model, _hf_twin(model), 224)


def test_key_mapping_round_trips_exactly():
    model = build_clip("tiny", seed=0)
    state = model.state_dict()
    back = from_hf(to_hf(state))
    assert set(back) == set(state)
    assert all(torch.equal(back[key], state[key]) for key in state)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B/32", "ViT-B/16"])
def test_full_size_models_match_transformers(name):
    start = time.perf_counter()
    model = build_clip(get_config(name), seed=0).eval()
    # the text tower of both is the same 512 x 12 model: compare it once
    _compare(model, _hf_twin(model), 224, batch=1, full=name == "ViT-B/16")
    assert time.perf_counter() - start < 120
