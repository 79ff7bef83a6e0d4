"""FGASeg end to end on the tiny preset (seeded random weights)."""

import pytest
import torch

from fgaseg.errors import ClassNamesError, ImageError, WeightsError
from fgaseg.model import FGASeg, catseg_tiny, fgaseg_tiny

from model_testing import make_tiny_model, names, rand_init_


@pytest.fixture(scope="module")
def tiny_model() -> FGASeg:
    return make_tiny_model(topk=None)


@pytest.fixture(scope="module")
def tiny_images() -> torch.Tensor:
    return torch.rand(2, 3, 48, 72, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("n", [1, 20, 171])
def test_shapes_and_finite(tiny_model, tiny_images, n):
    out = tiny_model.segment_logits(tiny_images, names(n))
    assert out.shape == (2, n, 48, 72)
    assert torch.isfinite(out).all()


def test_permutation_equivariance(tiny_model, tiny_images):
    cls = names(20)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3)).tolist()
    a = tiny_model.segment_logits(tiny_images, cls)
    b = tiny_model.segment_logits(tiny_images, [cls[i] for i in perm])
    assert torch.allclose(b, a[:, perm], atol=1e-5)


def test_permutation_equivariance_with_preselection(tiny_model, tiny_images):
    cls = names(40)  # > pad_len 32: class pre-selection active
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(4)).tolist()
    a = tiny_model.segment_logits(tiny_images, cls)
    b = tiny_model.segment_logits(tiny_images, [cls[i] for i in perm])
    assert torch.allclose(b, a[:, perm], atol=1e-5)
    assert (a == tiny_model.config.pruned_logit).any()  # 8 classes per image are cut


def test_batch_independence(tiny_model, tiny_images):
    both = tiny_model.segment_logits(tiny_images, names(20), topk=0)
    for i in range(2):
        alone = tiny_model.segment_logits(tiny_images[i:i + 1], names(20), topk=0)
        assert torch.allclose(alone[0], both[i], atol=1e-5)


@pytest.mark.parametrize("n", [20, 40])
def test_chunked_equals_unchunked(tiny_model, tiny_images, n):
    full = tiny_model.segment_logits(tiny_images, names(n), chunk_size=1000)
    chunked = tiny_model.segment_logits(tiny_images, names(n), chunk_size=3)
    assert torch.allclose(chunked, full, atol=1e-5)


def test_inference_equals_plain_forward(tiny_model, tiny_images):
    with torch.no_grad():
        plain = tiny_model(tiny_images, names(20)).logits
    assert torch.allclose(tiny_model.segment_logits(tiny_images, names(20), chunk_size=4), plain, atol=1e-5)


def test_topk_k_equal_n_is_full_and_small_k_prunes(tiny_model, tiny_images):
    full = tiny_model.segment_logits(tiny_images, names(20), topk=0)
    assert torch.equal(tiny_model.segment_logits(tiny_images, names(20), topk=20), full)
    assert torch.equal(tiny_model.segment_logits(tiny_images, names(20), topk=25), full)
    pruned = tiny_model.segment_logits(tiny_images, names(20), topk=1, chunk_size=4)
    kept = (pruned != tiny_model.config.pruned_logit).flatten(2).any(-1)
    assert pruned.shape == full.shape and torch.isfinite(pruned).all()
    assert kept.sum() >= 1


@pytest.mark.parametrize("n", [20, 40])  # 40 > pad_len: per-image class pre-selection
@pytest.mark.parametrize("batch", [1, 2])
def test_topk_k_at_least_n_is_exact_for_any_batch(tiny_model, tiny_images, n, batch):
    # issue #16.6: with one image per call the pruned path used to differ by ~7e-7
    images = tiny_images[:batch]
    full = tiny_model.segment_logits(images, names(n), topk=0)
    assert torch.equal(tiny_model.segment_logits(images, names(n), topk=n), full)


def test_sliding_window(tiny_model):
    img = torch.rand(1, 3, 50, 90, generator=torch.Generator().manual_seed(2))
    out = tiny_model.segment_logits(img, names(5), sliding=True)
    assert out.shape == (1, 5, 50, 90) and torch.isfinite(out).all()


def test_training_losses_and_gradients_reach_exactly_trainable_params():
    torch.manual_seed(0)
    model = rand_init_(FGASeg(fgaseg_tiny())).train()
    x = torch.rand(2, 3, 64, 64)
    y = torch.randint(0, 20, (2, 64, 64))
    y[0, :10] = 255
    out = model(x, names(20), y)
    assert set(out.losses) == {"loss_sem_seg", "loss_aux0", "loss_aux1", "loss_aux2", "loss_t2p"}
    expected = (out.losses["loss_sem_seg"] + 0.2 * out.losses["loss_aux0"] + out.losses["loss_aux1"]
                + out.losses["loss_aux2"] + 0.02 * out.losses["loss_t2p"])
    assert torch.allclose(out.loss, expected)
    assert out.logits.shape == (2, 20, 64, 64)
    out.loss.backward()
    last_visual_q = f"clip.visual.transformer.resblocks.{model.clip.config.vision_layers - 1}.attn.q_proj_weight"
    for name, p in model.named_parameters():
        if name.startswith("clip."):
            meant = "transformer" in name and ("q_proj" in name or "v_proj" in name)
            assert p.requires_grad == meant, name
        else:
            assert p.requires_grad, name
        if not p.requires_grad:
            assert p.grad is None, name
        elif name != last_visual_q:  # dense last block uses the value path only (CAT-Seg)
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_clip_and_catseg_losses():
    model = FGASeg(catseg_tiny(clip_finetune="frozen")).train()
    assert not any(p.requires_grad for p in model.clip.parameters())
    assert model.p2tformer is None and model.alignment_head is None
    out = model(torch.rand(1, 3, 64, 64), names(3), torch.randint(0, 3, (1, 64, 64)))
    assert set(out.losses) == {"loss_sem_seg"}
    groups = model.parameter_groups(lr=2e-4)
    assert {g["name"] for g in groups} == {"head", "head_norm"}


def test_parameter_groups_lr_and_decay(tiny_model):
    groups = {g["name"]: g for g in tiny_model.parameter_groups(lr=2e-4, clip_lr_multiplier=0.01)}
    assert groups["clip"]["lr"] == pytest.approx(2e-6) and groups["head"]["lr"] == pytest.approx(2e-4)
    assert groups["head_norm"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 1e-4
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)


def test_save_and_load_identical(tiny_model, tiny_images, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    loaded = FGASeg.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny_model.config
    a = tiny_model.segment_logits(tiny_images, names(7))
    b = loaded.segment_logits(tiny_images, names(7))
    assert torch.equal(a, b)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(WeightsError):
        FGASeg.from_pretrained(tmp_path / "missing")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        FGASeg.from_pretrained(bad)


def test_user_errors(tiny_model):
    with pytest.raises(ClassNamesError):
        tiny_model.segment_logits(torch.rand(1, 3, 8, 8), [])
    with pytest.raises(ClassNamesError):
        tiny_model.segment_logits(torch.rand(1, 3, 8, 8), "cat")
    with pytest.raises(ImageError):
        tiny_model.segment_logits(torch.rand(3, 8, 8), ["cat"])


@pytest.mark.parametrize("overrides", [dict(fusion="add"), dict(use_lcs=False), dict(use_p2tformer=False),
                                       dict(use_gcs=False), dict(decoder_mode="plain"),
                                       dict(p2t_layers=2, lcs_kernel_size=5),
                                       dict(prompt_templates=("a {}", "the {}"))])
def test_switch_variants_train_and_infer(overrides):
    model = FGASeg(fgaseg_tiny(**overrides)).train()
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    out = model(x, names(6), torch.randint(0, 6, (1, 40, 56)))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert ("loss_aux0" in out.losses) == (model.config.decoder_mode == "fast")
    scores = model.segment_logits(x, names(6), topk=3)
    assert scores.shape == (1, 6, 40, 56) and torch.isfinite(scores).all()
    assert model.training  # segment_logits restores the mode


def test_sliding_with_topk_and_preselection(tiny_model):
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(6))
    out = tiny_model.segment_logits(x, names(40), sliding=True, topk=2, chunk_size=3)
    assert out.shape == (1, 40, 40, 56) and torch.isfinite(out).all()


@pytest.mark.parametrize("n,topk,sliding", [(5, 0, False), (5, 3, False), (20, 1, False),
                                            (40, 0, False), (40, 3, False), (5, 1, True),
                                            (40, None, True)])
def test_compact_scores_equal_segment_logits(tiny_model, tiny_images, n, topk, sliding):
    # issue #16.1: the compact form keeps the pruned classes' map once, values unchanged
    dense = tiny_model.segment_logits(tiny_images, names(n), topk=topk, sliding=sliding)
    compact = tiny_model.segment_scores(tiny_images, names(n), topk=topk, sliding=sliding)
    assert len(compact) == 2
    for b, scores in enumerate(compact):
        assert scores.num_classes == n
        assert torch.equal(scores.to_dense(), dense[b])
        assert torch.equal(scores.argmax(), dense[b].argmax(0))
    if topk == 1:  # TopK pruned most classes: only the survivors and one shared map are stored
        assert all(s.values.shape[0] < n for s in compact)
