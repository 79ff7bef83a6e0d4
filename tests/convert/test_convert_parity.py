"""Converted official weights compute what the official head computes.

The official-named state dict (random values) goes through the converter into FGASeg; its
``p2tformer`` and ``head`` are compared with ``official_reference`` (a functional rewrite of the
official forward that reads the official names). A wrong mapping (e.g. q and k swapped, the
local and global embeddings exchanged) or a deviating forward shows up as a numeric mismatch.
``pad_len`` (not stored in the weights; 256 in every official config, which the conversion
tests check) is set to 8 here: the padding path is the same and the reference, which pads
naively, stays fast.
"""

from __future__ import annotations

import pytest
import torch

from fgaseg.convert import convert_official_checkpoint

from official_keys import make_official_state_dict
from official_reference import (
    reference_head,
    reference_image_features,
    reference_p2tformer,
    reference_text,
)

FGASeg = pytest.importorskip("fgaseg.model").FGASeg

_CONSTANT = ("attn_mask", "running_mean", "running_var", "num_batches_tracked")
_NORMS = ("norm1.weight", "norm2.weight", "norm.weight", "guidance_norm.weight",
          "double_conv.1.weight", "double_conv.4.weight")


def _official_with_random_head(name: str, seed: int):
    """Official dict: CLIP from the cheap pool, every head / P2T / projector tensor random."""
    state = make_official_state_dict(name, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if ".clip_model." in key or key.endswith(_CONSTANT) or not value.is_floating_point():
            continue
        fresh = torch.randn(value.shape, generator=generator) * 0.1
        state[key] = fresh + 1.0 if key.endswith(_NORMS) else fresh
    return state


def _converted_model(official, **overrides):
    config, state = convert_official_checkpoint(official)
    if overrides:
        config = config.replace(**overrides)
    with torch.device("meta"):
        model = FGASeg(config)
    model = model.to_empty(device="cpu")  # uninitialised memory; all but CLIP is loaded below
    head_state = {k: v for k, v in state.items() if not k.startswith("clip.")}
    result = model.load_state_dict(head_state, strict=False)  # CLIP is not used by these tests
    assert not result.unexpected_keys and all(k.startswith("clip.") for k in result.missing_keys)
    return model.eval()


def _inputs(B: int, T: int, C: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(B, C, 24, 24, generator=g)
    text = torch.nn.functional.normalize(torch.randn(T, 1, C, generator=g), dim=-1)
    res4 = torch.randn(B, 256, 48, 48, generator=g)
    res5 = torch.randn(B, 128, 96, 96, generator=g)
    return img, text, res4, res5


def _close(ours, ref, what):
    err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= 1e-4 * max(scale, 1.0), f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


@pytest.mark.slow
def test_catseg_head_matches_the_official_forward():
    official = _official_with_random_head("catseg_vitb16", seed=11)
    model = _converted_model(official, pad_len=8)
    img, text, res4, res5 = _inputs(2, 5, 512, seed=12)
    with torch.no_grad():
        ours = model.head.infer(img, text, text, [res4, res5], topk=None)
        ref, _ = reference_head(official, img, text.unsqueeze(0).expand(2, -1, -1, -1), res4, res5,
                                family="catseg", pad_len=8)
    assert ours.shape == ref.shape == (2, 5, 96, 96)
    _close(ours, ref, "CAT-Seg logits")


@pytest.mark.slow
def test_fgaseg_p2tformer_head_and_aux_match_the_official_forward():
    official = _official_with_random_head("fgaseg_vitb16_fast_cat", seed=21)
    model = _converted_model(official, pad_len=8)
    img, text, res4, res5 = _inputs(1, 4, 512, seed=22)
    with torch.no_grad():
        refined = model.p2tformer(img, text)
        ref_refined = reference_p2tformer(official, img, text)
        _close(refined, ref_refined, "P2Tformer output")
        ours = model.head.infer(img, refined, refined, [res4, res5], topk=16)  # T < 16: all kept
        full = model.head(img, refined, refined, [res4, res5])  # training path, eval pooling
        ref, ref_aux = reference_head(official, img, ref_refined, res4, res5, family="fgaseg", fusion="cat",
                                      pad_len=8)
    _close(ours, ref, "FGA-seg logits (TopK 16)")
    _close(full.logits, ref, "FGA-seg logits (full pass)")
    assert len(ref_aux) == 3
    for i, (a, r) in enumerate(zip(full.aux, ref_aux)):
        _close(a, r, f"aux{i}")


@pytest.mark.slow
def test_fgaseg_add_fusion_kernel5_preselection_and_training_pooling():
    # 6 classes > pad_len 4: the class pre-selection of large vocabularies
    official = _official_with_random_head("fgaseg_vitb16_plain_add", seed=31)
    official.update({k: v for k, v in _official_with_random_head("fgaseg_vitb16_fast_cat_kernel_5", seed=32).items()
                     if "Local_align" in k})
    model = _converted_model(official, pad_len=4)
    img, text, res4, res5 = _inputs(1, 6, 512, seed=33)
    with torch.no_grad():
        refined = model.p2tformer(img, text)
        ours = model.head.infer(img, refined, refined, [res4, res5], topk=None)
        ref, _ = reference_head(official, img, refined, res4, res5, family="fgaseg", fusion="add",
                                kernel=5, pad_len=4)
        _close(ours, ref, "pre-selected logits")
        assert (ours == -100).all(dim=(-1, -2)).sum() == 2  # 6 classes, 4 kept
        model.train()  # class pooling 2x2 as in training (no dropout anywhere)
        train_logits = model.head(img, refined, refined, [res4, res5]).logits
        ref_train, _ = reference_head(official, img, refined, res4, res5, family="fgaseg", fusion="add",
                                      kernel=5, pad_len=4, pool=2)
    _close(train_logits, ref_train, "training-mode logits (pooling 2x2)")


def test_clip_image_features_guidance_and_text_match_the_official_forward():
    """Dense CLIP (resized positional embedding, CAT-Seg's dense last block), the decoder
    guidance from two blocks through upsample1 / upsample2, and the class text embeddings.

    Uses the small ``tiny`` CLIP geometry (the forward rules are the same for ViT-B/L) with an
    input grid of 12x12 against an 8x8 positional embedding, so that it is resized."""
    from fgaseg.clip import tokenize
    from fgaseg.convert.official import ours_to_official, rename_official_state_dict
    from fgaseg.model import catseg_tiny

    config = catseg_tiny(image_size=96, guidance_layers=(1, 2))
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in FGASeg(config).state_dict().items()}
    generator = torch.Generator().manual_seed(51)
    official = {}
    for name, shape in shapes.items():
        value = torch.randn(shape, generator=generator) * 0.05
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            value = value + 1.0
        official[ours_to_official(name)] = value
    model = FGASeg(config)
    model.load_state_dict(rename_official_state_dict(official), strict=True)
    model.eval()
    images = torch.rand(2, 3, 80, 120, generator=generator)
    names = ["cat", "grass, lawn", "sky"]
    with torch.no_grad():
        img, guidance = model.image_features(images)
        res3, res4, res5 = reference_image_features(official, images, resolution=96, guidance_layers=(1, 2))
        text = model.encode_classes(names)
        ref_text = reference_text(official, tokenize([f"A photo of a {n} in the scene" for n in ("cat", "grass", "sky")]))
    assert img.shape == res3.shape == (2, 128, 12, 12)
    _close(img, res3, "dense CLIP embedding (res3)")
    _close(guidance[0], res4, "upsample1(block 1) (res4)")
    _close(guidance[1], res5, "upsample2(block 2) (res5)")
    assert text.shape == (3, 1, 128)
    _close(text[:, 0], ref_text, "class text embeddings")
