"""CLIP towers: shapes, dense mode, positional-embedding interpolation, text encoder."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fgaseg.clip import CLIP, CLIPConfig, build_clip, get_config, list_models
from fgaseg.errors import ConfigError, ImageError


@pytest.fixture(scope="module")
def tiny():
    return build_clip("tiny", seed=0).eval()


def test_named_configs_have_openai_parameter_counts():
    # totals published for OpenAI's CLIP models
    expected = {"ViT-B/32": 151_277_313, "ViT-B/16": 149_620_737,
                "ViT-L/14": 427_616_513, "ViT-L/14@336px": 427_944_193}
    for name, count in expected.items():
        with torch.device("meta"):
            model = CLIP(get_config(name))
        assert sum(p.numel() for p in model.parameters()) == count, name
    assert set(expected) <= set(list_models())


def test_parameter_names_follow_openai_with_split_attention(tiny):
    names = set(tiny.state_dict())
    for prefix in ("visual.transformer.resblocks.0.", "transformer.resblocks.1."):
        for suffix in ("attn.q_proj_weight", "attn.k_proj_weight", "attn.v_proj_weight",
                       "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                       "ln_1.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_proj.bias"):
            assert prefix + suffix in names
    for key in ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                "visual.ln_pre.weight", "visual.ln_post.bias", "visual.proj",
                "token_embedding.weight", "positional_embedding", "ln_final.weight",
                "text_projection", "logit_scale"):
        assert key in names
    assert not any("in_proj_weight" in n for n in names)


def test_build_clip_accepts_config_seed_and_image_size():
    config = CLIPConfig(32, 32, 1, 64, 8, 1, 16, 100, 64, 1, 1)
    a, b = build_clip(config, seed=3), build_clip(config, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(build_clip(config, seed=4).visual.proj, a.visual.proj)
    bigger = build_clip(config, image_size=64)
    assert bigger.visual.positional_embedding.shape == (8 * 8 + 1, 64)
    with pytest.raises(ConfigError):
        build_clip("ViT-H/99")


def test_encode_image_dense_shapes_non_square(tiny):
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = tiny.encode_image_dense(images, layers=(3, 1))
    assert out.grid == (8, 12)
    assert out.tokens.shape == (2, 96, 128) and out.cls.shape == (2, 128)
    assert [t.shape for t in out.layers] == [(2, 128, 8, 12)] * 2
    assert out.token_map().shape == (2, 128, 8, 12)
    assert torch.equal(out.token_map()[:, :, 2, 5], out.tokens[:, 2 * 12 + 5])
    assert tiny.encode_image(images).shape == (2, 128)
    assert tiny.visual.embed(images).shape == (2, 97, 128)


def test_384_input_gives_24x24_tokens_for_patch_16():
    model = build_clip("tiny-B/16", seed=0).eval()
    with torch.no_grad():
        out = model.encode_image_dense(torch.randn(1, 3, 384, 384), layers=(0,))
    assert out.grid == (24, 24) and out.tokens.shape == (1, 576, 64)
    assert out.layers[0].shape == (1, 128, 24, 24)


def test_bad_image_sizes_raise_image_error(tiny):
    with pytest.raises(ImageError, match="patch size 8"):
        tiny.encode_image(torch.randn(1, 3, 60, 64))
    with pytest.raises(ImageError):
        tiny.encode_image(torch.randn(3, 64, 64))
    with pytest.raises(IndexError):
        tiny.encode_image_dense(torch.randn(1, 3, 64, 64), layers=(4,))


def test_positional_embedding_interpolation(tiny):
    pos = tiny.visual.positional_embedding
    assert tiny.visual.resized_positional_embedding((8, 8)) is pos
    resized = tiny.visual.resized_positional_embedding((4, 6))
    assert resized.shape == (1 + 24, 128)
    assert torch.equal(resized[0], pos[0])  # CLS position untouched
    grid = pos[1:].reshape(8, 8, 128).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=(4, 6), mode="bicubic", align_corners=False)
    assert torch.allclose(resized[1:], expected[0].reshape(128, -1).t())
    # a constant field stays constant under bicubic interpolation
    with torch.no_grad():
        model = build_clip("tiny", seed=1)
        model.visual.positional_embedding[1:] = 0.25
        assert torch.allclose(model.visual.resized_positional_embedding((5, 11))[1:],
                              torch.full((55, 128), 0.25))


def test_dense_last_block_follows_catseg_value_path(tiny):
    images = torch.randn(2, 3, 64, 64)
    visual = tiny.visual
    with torch.no_grad():
        x = visual.embed(images)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        attn = last.attn
        packed = torch.cat([attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight])
        width = x.shape[-1]
        v = F.linear(last.ln_1(x), packed, attn.in_proj_bias)[..., 2 * width:]
        v = F.linear(v, attn.out_proj.weight, attn.out_proj.bias) + x[:, :1]
        v = v + last.mlp(last.ln_2(v))
        expected = visual.ln_post(v) @ visual.proj
        out = tiny.encode_image_dense(images, layers=(2, 3))
    assert torch.allclose(out.tokens, expected[:, 1:], atol=1e-5)
    assert torch.allclose(out.cls, expected[:, 0], atol=1e-5)
    assert torch.allclose(out.layers[0], x[:, 1:].transpose(1, 2).reshape(2, 128, 8, 8))
    assert torch.allclose(out.layers[1], v[:, 1:].transpose(1, 2).reshape(2, 128, 8, 8))


def test_plain_dense_pass_matches_encode_image(tiny):
    images = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        plain = tiny.encode_image_dense(images, dense_last_block=False)
        dense = tiny.encode_image_dense(images)
        assert torch.allclose(plain.cls, tiny.encode_image(images), atol=1e-6)
    assert not torch.allclose(plain.tokens, dense.tokens)


def test_intermediate_layers_equal_block_outputs_via_hooks(tiny):
    captured = {}
    hooks = [tiny.visual.transformer.resblocks[i].register_forward_hook(
        lambda module, args, output, i=i: captured.__setitem__(i, output)) for i in (0, 2)]
    images = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        out = tiny.encode_image_dense(images, layers=(2, 0))
    for hook in hooks:
        hook.remove()
    for index, got in zip((2, 0), out.layers):
        assert torch.equal(got, captured[index][:, 1:].transpose(1, 2).reshape(1, 128, 6, 8))


def test_text_is_causal_and_read_at_eot(tiny):
    from fgaseg.clip import tokenize

    ids = tokenize(["a photo of a cat", "a photo of a cat", "a photo of a dog"])
    ids[1, 10:] = 123  # garbage after EOT must not matter
    with torch.no_grad():
        out = tiny.encode_text(ids)
        short = tiny.encode_text(ids[:1, :7])
        # the text transformer itself is causal: later positions do not change earlier ones
        x = torch.randn(1, 12, 128)
        y = x.clone()
        y[:, 6:] += 1.0
        mask = tiny.causal_mask(12, x.device)
        fx, _ = tiny.transformer(x, attn_mask=mask)
        fy, _ = tiny.transformer(y, attn_mask=mask)
    assert out.shape == (3, 128)
    assert torch.allclose(out[0], out[1], atol=1e-5)
    assert torch.allclose(out[0], short[0], atol=1e-5)
    assert not torch.allclose(out[0], out[2], atol=1e-3)
    assert torch.allclose(fx[:, :6], fy[:, :6], atol=1e-6) and not torch.allclose(fx[:, 6:], fy[:, 6:])
    with pytest.raises(ValueError):
        tiny.encode_text(torch.zeros(1, 78, dtype=torch.long))


def test_clip_forward_logits(tiny):
    from fgaseg.clip import tokenize

    with torch.no_grad():
        per_image, per_text = tiny(torch.randn(2, 3, 64, 64), tokenize(["cat", "dog", "car"]))
    assert per_image.shape == (2, 3) and torch.equal(per_text, per_image.t())


def test_gradients_reach_attention_weights(tiny):
    model = build_clip("tiny", seed=0)
    out = model.encode_image_dense(torch.randn(1, 3, 32, 32)).tokens.sum()
    out.backward()
    assert model.visual.transformer.resblocks[0].attn.q_proj_weight.grad is not None
    # the dense last block does not use q/k, so they get no gradient
    assert model.visual.transformer.resblocks[-1].attn.q_proj_weight.grad is None


def test_config_round_trip_and_validation():
    config = get_config("ViT-B/16")
    assert CLIPConfig.from_dict(config.to_dict()) == config
    assert config.vision_heads == 12 and config.grid_size == 14
    with pytest.raises(ConfigError):
        CLIPConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError):
        dataclasses.replace(config, image_resolution=225)


def test_a_float64_copy_runs_in_float64_and_agrees_with_float32(tiny):
    import copy

    images = torch.randn(2, 3, 64, 64)
    double = copy.deepcopy(tiny).double()
    with torch.no_grad():
        out = double.encode_image(images.double())
        text = double.encode_text(torch.randint(1, 100, (3, 77)))
        assert out.dtype == text.dtype == torch.float64  # LayerNorms too, not only the GEMMs
        assert torch.allclose(out.float(), tiny.encode_image(images), atol=1e-5)
