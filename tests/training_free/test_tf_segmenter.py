"""TrainingFreeSegmenter with seeded random CLIP weights (no pretrained weights here)."""

import sys
import types

import pytest
import torch

from fgaseg.clip import CLIPConfig, IMAGENET_TEMPLATES, build_clip, encode_class_names
from fgaseg.errors import ClassNamesError, ConfigError, ImageError
from fgaseg.training_free import METHODS, TrainingFreeSegmenter

NAMES_20 = [
    "cat", "dog", "sky", "road", "tree", "person", "car", "grass", "water", "building",
    "boat", "bird", "chair", "table", "wall", "floor", "cloud", "mountain", "sand", "snow",
]
NAMES_171 = [f"thing number {i}" for i in range(171)]


@pytest.fixture(scope="module")
def tiny_clip():
    return build_clip("tiny", seed=0)  # patch 8, native 64x64


def make(clip, method="clearclip", **kwargs):
    return TrainingFreeSegmenter(clip, method=method, templates=["{}"], **kwargs)


def images(b, h, w, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "names,size", [(["cat"], (40, 72)), (NAMES_20, (37, 61)), (NAMES_171, (72, 48))]
)
def test_runs_for_1_20_171_classes_at_non_square_sizes(tiny_clip, method, names, size):
    seg = TrainingFreeSegmenter(tiny_clip, method=method, templates=["{}"])
    out = seg.segment_logits(images(2, *size), names)
    assert out.shape == (2, len(names), *size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # scores are scaled cosines
    assert out.abs().max() <= seg.logit_scale + 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_permuted_classes_give_permuted_scores(tiny_clip, method):
    perm = torch.randperm(len(NAMES_20), generator=torch.Generator().manual_seed(3)).tolist()
    permuted = [NAMES_20[i] for i in perm]
    x = images(1, 48, 80, seed=1)
    # separate segmenters, so nothing is shared through the text cache
    a = make(tiny_clip, method).segment_logits(x, NAMES_20)
    b = make(tiny_clip, method).segment_logits(x, permuted)
    torch.testing.assert_close(b, a[:, perm], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_sliding_equals_whole_on_one_window(tiny_clip, method):
    seg = TrainingFreeSegmenter(tiny_clip, method=method, templates=["{}"])
    assert seg.window == (64, 64)
    x = images(2, 64, 64, seed=2)
    whole = seg.segment_logits(x, NAMES_20[:5], sliding=False)
    slid = seg.segment_logits(x, NAMES_20[:5], sliding=True)
    torch.testing.assert_close(slid, whole)


def test_sliding_on_large_non_square_image(tiny_clip):
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"], stride=24)
    x = images(1, 100, 157, seed=4)
    out = seg.segment_logits(x, NAMES_20[:4], sliding=True)
    assert out.shape == (1, 4, 100, 157) and torch.isfinite(out).all()
    # a window-sized corner crop is exactly the top-left window's result, where no other
    # window overlaps it: rows < 24 and columns < 24 are covered by that window alone
    corner = seg.segment_logits(x[:, :, :64, :64], NAMES_20[:4])
    torch.testing.assert_close(out[:, :, :24, :24], corner[:, :, :24, :24])


def test_constructor_sliding_default_is_used(tiny_clip):
    x = images(1, 64, 128, seed=5)
    on = TrainingFreeSegmenter(tiny_clip, templates=["{}"], sliding=True)
    off = TrainingFreeSegmenter(tiny_clip, templates=["{}"])
    expected = off.segment_logits(x, ["a", "b"], sliding=True)
    torch.testing.assert_close(on.segment_logits(x, ["a", "b"]), expected)
    assert not torch.allclose(on.segment_logits(x, ["a", "b"]), off.segment_logits(x, ["a", "b"]))


def test_methods_give_different_scores(tiny_clip):
    x = images(1, 48, 64, seed=6)
    outs = {m: make(tiny_clip, m).segment_logits(x, NAMES_20[:3]) for m in METHODS}
    for i, a in enumerate(METHODS):
        for b in METHODS[i + 1 :]:
            assert not torch.allclose(outs[a] / outs[a].abs().max(), outs[b] / outs[b].abs().max())


def test_template_ensemble_is_mean_of_normalised_embeddings(tiny_clip):
    seg = TrainingFreeSegmenter(tiny_clip)  # the 80 ImageNet templates by default
    assert len(seg.templates) == 80
    names = ["cat", "traffic light"]
    per_template = encode_class_names(tiny_clip, names, IMAGENET_TEMPLATES)  # (2, 80, D)
    mean = per_template.mean(dim=1)
    expected = mean / mean.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(seg.encode_classes(names), expected, atol=1e-5, rtol=1e-5)


def test_text_embeddings_are_cached(tiny_clip, monkeypatch):
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"])
    calls = []
    original = tiny_clip.encode_text
    counting = lambda ids: calls.append(len(ids)) or original(ids)  # noqa: E731
    monkeypatch.setattr(tiny_clip, "encode_text", counting)
    first = seg.encode_classes(["cat", "dog"])
    again = seg.encode_classes(["dog", "cat"])
    assert calls == [2]
    torch.testing.assert_close(again, first.flip(0))
    seg.encode_classes(["cat", "sky"])
    assert calls == [2, 1]  # only the new name is encoded
    seg.clear_cache()
    seg.encode_classes(["cat"])
    assert calls == [2, 1, 1]


def test_temperature_and_logit_scale(tiny_clip):
    x = images(1, 32, 48, seed=7)
    base = TrainingFreeSegmenter(tiny_clip, templates=["{}"], logit_scale=50.0)
    assert base.logit_scale == 50.0
    assert make(tiny_clip, temperature=0.02).logit_scale == pytest.approx(50.0)
    double = TrainingFreeSegmenter(tiny_clip, templates=["{}"], temperature=0.01)
    expected = 2 * base.segment_logits(x, ["a", "b"])
    torch.testing.assert_close(double.segment_logits(x, ["a", "b"]), expected)
    with pytest.raises(ConfigError):
        TrainingFreeSegmenter(tiny_clip, temperature=0.01, logit_scale=100.0)


def test_background_threshold_appends_background(tiny_clip):
    x = images(1, 40, 56, seed=8)
    names = NAMES_20[:3]
    logits = TrainingFreeSegmenter(tiny_clip, templates=["{}"]).segment_logits(x, names)
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"], background_threshold=0.5)
    assert seg.output_class_names(names) == names + ["background"]
    scores = seg.segment_logits(x, names)
    assert scores.shape == (1, 4, 40, 56)
    top_prob = logits.softmax(dim=1).amax(dim=1)
    is_background = scores.argmax(dim=1) == 3
    assert torch.equal(is_background, top_prob < 0.5)
    # elsewhere the class decision is unchanged
    assert torch.equal(scores.argmax(dim=1)[~is_background], logits.argmax(dim=1)[~is_background])


def test_background_threshold_extremes_and_existing_background_class(tiny_clip):
    x = images(1, 32, 32, seed=9)
    names = ["cat", "Background", "dog"]
    everything = TrainingFreeSegmenter(tiny_clip, templates=["{}"], background_threshold=1.0)
    assert everything.output_class_names(names) == names
    out = everything.segment_logits(x, names)
    assert out.shape[1] == 3 and (out.argmax(dim=1) == 1).all()
    nothing = TrainingFreeSegmenter(tiny_clip, templates=["{}"], background_threshold=1e-6)
    plain = TrainingFreeSegmenter(tiny_clip, templates=["{}"]).segment_logits(x, ["cat", "dog"])
    assert torch.equal(nothing.segment_logits(x, ["cat", "dog"]).argmax(dim=1), plain.argmax(dim=1))


def test_user_errors(tiny_clip):
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"])
    with pytest.raises(ClassNamesError):
        seg.segment_logits(images(1, 32, 32), [])
    with pytest.raises(ClassNamesError):
        seg.segment_logits(images(1, 32, 32), ["cat", "  "])
    with pytest.raises(ClassNamesError):
        seg.segment_logits(images(1, 32, 32), "cat")
    with pytest.raises(ImageError):
        seg.segment_logits(torch.rand(3, 32, 32), ["cat"])
    with pytest.raises(ImageError):
        seg.segment_logits(torch.rand(1, 4, 32, 32), ["cat"])
    with pytest.raises(ConfigError):
        TrainingFreeSegmenter(tiny_clip, method="segformer")
    with pytest.raises(ConfigError):
        TrainingFreeSegmenter(tiny_clip, templates=["no placeholder"])
    with pytest.raises(ConfigError):
        TrainingFreeSegmenter(tiny_clip, background_threshold=1.5)
    with pytest.raises(ConfigError):
        TrainingFreeSegmenter(tiny_clip, stride=0)


def test_protocol_members(tiny_clip, monkeypatch):
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"])
    assert seg.device == torch.device("cpu")
    assert seg.eval() is seg
    seen = {}

    def fake_predict(model, image_or_list, classes, **kw):
        seen.update(model=model, image=image_or_list, classes=classes, kw=kw)
        return "result"

    api = types.ModuleType("fgaseg.predict.api")
    api.predict = fake_predict
    try:
        import fgaseg.predict  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "fgaseg.predict", types.ModuleType("fgaseg.predict"))
    monkeypatch.setitem(sys.modules, "fgaseg.predict.api", api)
    assert seg.predict("img.png", ["cat"], sliding=True) == "result"
    assert seen == {"model": seg, "image": "img.png", "classes": ["cat"], "kw": {"sliding": True}}


def test_from_clip_file_and_instance(tiny_clip, tmp_path):
    from fgaseg.clip import save_clip

    path = save_clip(tiny_clip, tmp_path / "tiny.safetensors")
    from_file = TrainingFreeSegmenter.from_clip(str(path), method="naclip", templates=["{}"])
    from_instance = TrainingFreeSegmenter.from_clip(tiny_clip, method="naclip", templates=["{}"])
    assert from_instance.clip is tiny_clip and from_file.method == "naclip"
    x = images(1, 40, 64, seed=10)
    expected = from_instance.segment_logits(x, ["a", "b"])
    torch.testing.assert_close(from_file.segment_logits(x, ["a", "b"]), expected)


def test_small_context_length_clip():
    # the synthetic benchmark's CLIPs may have a short text context
    config = CLIPConfig(32, 32, 2, 32, 8, 2, 16, 49408, 32, 2, 2)
    clip = build_clip(config, seed=1)
    seg = TrainingFreeSegmenter(clip, method="clearclip", templates=["{}"])
    out = seg.segment_logits(images(2, 24, 40), ["red square", "blue circle", "green triangle"])
    assert out.shape == (2, 3, 24, 40)


@pytest.mark.slow
def test_vit_b16_shaped_clip_runs():
    clip = build_clip("ViT-B/16", seed=0)
    seg = TrainingFreeSegmenter(clip, method="clearclip", templates=["{}"])
    out = seg.segment_logits(images(1, 224, 304), ["cat", "dog", "sky"])
    assert out.shape == (1, 3, 224, 304) and torch.isfinite(out).all()


def test_predict_end_to_end_with_predict_api(tiny_clip):
    import numpy as np

    seg = TrainingFreeSegmenter(tiny_clip, method="naclip", templates=["{}"])
    rgb = (np.random.default_rng(0).random((45, 70, 3)) * 255).astype(np.uint8)
    result = seg.predict(rgb, ["cat", "dog", "sky"])
    assert result.labels.shape == (45, 70) and result.scores.shape == (3, 45, 70)
    assert result.class_names == ["cat", "dog", "sky"]
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert sum(result.pixel_share.values()) == pytest.approx(1.0)


def test_uint8_images_are_scaled(tiny_clip):
    seg = TrainingFreeSegmenter(tiny_clip, templates=["{}"])
    x8 = (images(1, 32, 40, seed=11) * 255).round().to(torch.uint8)
    expected = seg.segment_logits(x8.float() / 255, ["a", "b"])
    torch.testing.assert_close(seg.segment_logits(x8, ["a", "b"]), expected)
    with pytest.raises(ImageError):
        seg.segment_logits(x8.long(), ["a"])
