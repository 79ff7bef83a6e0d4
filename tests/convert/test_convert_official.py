"""Official-name state dicts convert, load strictly into FGASeg, and the converted model runs."""

from __future__ import annotations

import time

import pytest
import torch

from fgaseg.convert import convert_official_checkpoint, official_to_ours
from fgaseg.errors import WeightsError

from official_keys import (
    VARIANTS,
    make_official_state_dict,
    official_state_dict_spec,
    swin_shift_mask,
)

FGASeg = pytest.importorskip("fgaseg.model").FGASeg

CLASSES = ["cat", "grass, lawn", "sky"]


def _meta_state(name):
    return {k: torch.empty(s, device="meta") for k, s in official_state_dict_spec(name).items()}


def _check_config(config, name):
    v = VARIANTS[name]
    fga = v.family == "fgaseg"
    assert config.clip == v.clip
    assert config.image_size == ((384, 384) if v.clip == "ViT-B/16" else (336, 336))
    assert config.guidance_layers == ((3, 7) if v.clip == "ViT-B/16" else (7, 15))
    assert (config.use_p2tformer, config.use_t2p_loss, config.use_gcs, config.use_lcs) == (fga,) * 4
    assert config.decoder_mode == (v.decoder if fga else "plain")
    if fga:
        assert config.fusion == v.fusion
        assert config.p2t_layers == v.p2t_layers
        assert config.lcs_kernel_size == v.kernel_size
        assert config.topk == (16 if v.decoder == "fast" else None)
    assert config.num_templates == v.prompt_channels
    assert (config.num_layers, config.hidden_dim, config.window_size, config.pad_len) == (2, 128, 12, 256)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_names_and_shapes_match_the_model(name):
    """Every official key maps to a parameter/buffer of the model with the same shape.

    The converter compares the renamed official dict with ``FGASeg(config).state_dict()``
    (names and shapes, both ways), so a successful conversion of the spec is the parity check.
    """
    config, state = convert_official_checkpoint(_meta_state(name))
    _check_config(config, name)
    spec = official_state_dict_spec(name)
    assert sorted(state) == sorted(official_to_ours(k) for k in spec)
    assert all(tuple(state[official_to_ours(k)].shape) == s for k, s in spec.items())


def test_a_pre_resized_positional_embedding_keeps_its_size():
    state = _meta_state("catseg_vitb16")
    state["sem_seg_head.predictor.clip_model.visual.positional_embedding"] = torch.empty(577, 768, device="meta")
    config, converted = convert_official_checkpoint(state)
    assert config.clip == "ViT-B/16" and config.clip_config["image_resolution"] == 384
    assert converted["clip.visual.positional_embedding"].shape == (577, 768)
    assert convert_official_checkpoint(_meta_state("catseg_vitb16"))[0].clip_config is None


def test_model_names_are_the_official_ones_under_five_prefixes():
    from fgaseg.model import fgaseg_vitb16_384

    with torch.device("meta"):
        model = FGASeg(fgaseg_vitb16_384())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    spec = official_state_dict_spec("fgaseg_vitb16_fast_cat")
    assert ours == {official_to_ours(k): s for k, s in spec.items()}


def test_swin_masks_of_the_model_equal_the_official_constants():
    from fgaseg.model.config import catseg_vitb16_384
    from fgaseg.model.swin_aggregation import SwinTransformerBlockWrapper

    config = catseg_vitb16_384()
    wrapper = SwinTransformerBlockWrapper(config.hidden_dim, config.appearance_guidance_proj_dim,
                                          (24, 24), config.num_heads, config.window_size)
    assert torch.equal(wrapper.block_2.attn_mask, swin_shift_mask(24, 12, 6))
    assert "block_1.attn_mask" not in wrapper.state_dict()


def _run(model, size):
    model.eval()
    images = torch.rand(1, 3, size, size)
    with torch.no_grad():
        logits = model.segment_logits(images, CLASSES)
    assert logits.shape == (1, len(CLASSES), size, size)
    assert torch.isfinite(logits).all()
    return logits


@pytest.mark.slow
def test_detectron2_file_loads_with_from_pretrained_and_runs(tmp_path):
    name = "fgaseg_vitb16_fast_cat"
    official = make_official_state_dict(name, seed=3)
    path = tmp_path / "model_final.pth"
    torch.save({"model": official, "iteration": 79999, "trainer": {"iteration": 79999}}, path)
    model = FGASeg.from_pretrained(path)
    _check_config(model.config, name)
    # the weights really landed where the table says
    loaded = model.state_dict()
    for key in ("upsample1.weight", "sem_seg_head.predictor.clip_model.visual.transformer.resblocks.3.attn.q_proj_weight",
                "sem_seg_head.predictor.transformer.layers.1.attention.padding_tokens",
                "sem_seg_head.predictor.DCDT.cross_atten_text.0.multihead_attn.in_proj_weight",
                "sem_seg_head.predictor.proj.vis.1.1.running_var",
                "sem_seg_head.predictor.transformer.Local_align.txt.weight"):
        assert torch.equal(loaded[official_to_ours(key)], official[key]), key
    _run(model, 384)


@pytest.mark.slow
def test_fgaseg_convert_command_writes_a_loadable_folder(tmp_path, capsys):
    from fgaseg.cli import main

    official = make_official_state_dict("catseg_vitb16", seed=4)
    path = tmp_path / "model_base.pth"
    torch.save({"model": official, "iteration": 79999}, path)
    out = tmp_path / "catseg-b16"
    assert main(["convert", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CAT-Seg ViT-B/16" in printed and str(out) in printed
    assert main(["convert", str(path), "--out", str(out)]) == 2  # refuses to overwrite
    from safetensors.torch import load_file

    written = load_file(str(out / "model.safetensors"))
    assert len(written) == len(official)
    assert all(torch.equal(written[official_to_ours(k)], v) for k, v in official.items())
    model = FGASeg.from_pretrained(out)  # the forward of a converted model: see the test above
    _check_config(model.config, "catseg_vitb16")


def _model_without_random_init(config, state):
    """FGASeg(config) with ``state`` loaded strictly, skipping the random initialisation of
    ~430M values: built on the meta device, materialised uninitialised, then every persistent
    tensor is loaded; the few non-persistent buffers (config-independent constants such as
    the CLIP mean/std) are copied from a small model."""
    from fgaseg.model import catseg_tiny

    with torch.device("meta"):
        model = FGASeg(config)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    constants = dict(FGASeg(catseg_tiny()).named_buffers())
    for name, buffer in model.named_buffers():
        if name not in state:
            buffer.copy_(constants[name])
    return model


@pytest.mark.slow
def test_catseg_vitl14_336_converts_and_runs():
    started = time.perf_counter()
    official = make_official_state_dict("catseg_vitl14_336")
    config, state = convert_official_checkpoint({"model": official, "iteration": 1})
    del official
    model = _model_without_random_init(config, state)
    del state
    _run(model, 336)
    assert time.perf_counter() - started < 60


def test_fgaseg_convert_command_reports_foreign_files_in_one_line(tmp_path, capsys):
    from fgaseg.cli import main

    path = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(2, 3, 16, 16)}, path)
    assert main(["convert", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "not an official" in err
    assert not (tmp_path / "out").exists()


def test_missing_unknown_and_misshapen_keys_are_named():
    state = _meta_state("fgaseg_vitb16_fast_cat")
    key = "sem_seg_head.predictor.transformer.layers.1.attention.MLP.2.weight"
    missing = dict(state)
    del missing[key]
    with pytest.raises(WeightsError, match=r"lacks .*layers\.1\.attention\.MLP\.2\.weight"):
        convert_official_checkpoint(missing)

    extra = dict(state)
    extra["sem_seg_head.predictor.transformer.layers.0.attention.scale"] = torch.empty(128, device="meta")
    with pytest.raises(WeightsError, match="no place in the fgaseg model: .*layers.0.attention.scale"):
        convert_official_checkpoint(extra)

    foreign = dict(state)
    foreign["sem_seg_head.pixel_decoder.weight"] = torch.empty(3, device="meta")
    with pytest.raises(WeightsError, match="unknown keys: sem_seg_head.pixel_decoder.weight"):
        convert_official_checkpoint(foreign)

    prompted = dict(state)
    prompted["sem_seg_head.predictor.clip_model.visual.transformer.prompt_tokens"] = torch.empty(12, 4, 768, device="meta")
    with pytest.raises(WeightsError, match="visual.transformer.prompt_tokens .*PROMPT_LENGTH"):
        convert_official_checkpoint(prompted)

    old_catseg = dict(state)
    old_catseg["backbone.res2.0.conv1.weight"] = torch.empty(3, device="meta")
    with pytest.raises(WeightsError, match="unknown keys: backbone.res2.0.conv1.weight .*pre-CVPR"):
        convert_official_checkpoint(old_catseg)

    wrong = dict(state)
    wrong["sem_seg_head.predictor.DCDT.gamma_text"] = torch.empty(768, device="meta")
    with pytest.raises(WeightsError, match=r"DCDT.gamma_text \(768,\) vs \(512,\)"):
        convert_official_checkpoint(wrong)


def test_corrupt_swin_mask_is_detected():
    official = {k: (torch.zeros(s) if "attn_mask" in k else torch.empty(s, device="meta"))
                for k, s in official_state_dict_spec("catseg_vitb16").items()}
    official["sem_seg_head.predictor.transformer.layers.0.swin_block.block_2.attn_mask"][0, 0, 0] = 3.0
    with pytest.raises(WeightsError, match="not a Swin window mask"):
        convert_official_checkpoint(official)
