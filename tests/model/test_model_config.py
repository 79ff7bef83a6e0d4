import pytest

from fgaseg.errors import ConfigError
from fgaseg.model import PRESETS, FGASegConfig, catseg_vitb16_384, fgaseg_vitb16_384, get_preset


def test_presets_roundtrip_through_dict():
    for name in PRESETS:
        cfg = get_preset(name)
        assert FGASegConfig.from_dict(cfg.to_dict()) == cfg


def test_official_defaults():
    cfg = fgaseg_vitb16_384()
    assert cfg.image_size == (384, 384) and cfg.guidance_layers == (3, 7)
    assert cfg.feature_resolution() == (24, 24)
    assert (cfg.use_p2tformer, cfg.use_t2p_loss, cfg.use_gcs, cfg.use_lcs) == (True, True, True, True)
    assert cfg.aux_loss_weights == (0.2, 1.0, 1.0) and cfg.lambda_align == 0.02 and cfg.topk == 16
    assert get_preset("fgaseg_vitl14_336").feature_resolution() == (24, 24)
    cat = catseg_vitb16_384()
    assert not (cat.use_p2tformer or cat.use_t2p_loss or cat.use_gcs or cat.use_lcs)
    assert cat.decoder_mode == "plain"


@pytest.mark.parametrize("bad", [dict(decoder_mode="turbo"), dict(fusion="mul"), dict(clip_finetune="prompt"),
                                 dict(prompt_templates=["no placeholder"]), dict(hidden_dim=130, num_heads=4),
                                 dict(attention_type="full")])
def test_invalid_configs_raise(bad):
    with pytest.raises(ConfigError):
        FGASegConfig(**bad)


def test_unknown_keys_and_presets():
    with pytest.raises(ConfigError):
        FGASegConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError):
        get_preset("nope")


def test_clip_config_object_is_accepted():
    from fgaseg.clip import get_config
    from fgaseg.model import fgaseg_tiny

    cfg = fgaseg_tiny(clip=get_config("tiny"))
    assert cfg.clip == "custom" and cfg.clip_config["vision_patch_size"] == 8
    assert cfg.feature_resolution() == (8, 8)
    assert FGASegConfig.from_dict(cfg.to_dict()) == cfg


def test_docs_give_the_tiny_presets_topk_as_saved():
    # issue #16.7: docs/model.md said the tiny preset has TopK off; its config.json says 16
    import re
    from pathlib import Path

    from fgaseg.model import catseg_tiny, fgaseg_tiny

    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "model.md").read_text().split())
    stated = re.search(r"`fgaseg_tiny` keeps the default `topk` (\d+)", text)
    assert stated and int(stated.group(1)) == fgaseg_tiny().topk == fgaseg_tiny().to_dict()["topk"]
    assert "`catseg_tiny(**overrides)` (plain decoder, `topk=None`)" in text
    assert catseg_tiny().topk is None
