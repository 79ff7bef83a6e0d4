"""The tiny CLIP's region-text term: boxes as token sets, one pass for CLS and dense tokens."""

import numpy as np
import pytest
import torch

from fgaseg.clip import build_clip
from fgaseg.synth.pretrain import (
    PretrainConfig, _augment, box_regions, embeddings_with_tokens, region_loss, tiny_clip_config,
    token_region_loss,
)


def test_box_regions_cover_the_tokens_whose_centres_lie_in_each_box():
    labels = np.full((1, 32, 32), 255, dtype=np.uint8)
    labels[0, 2:14, 18:30] = 7  # box rows 2-13, cols 18-29 -> token centres 3.5, 11.5 / 19.5, 27.5
    labels[0, 20:22, 5:7] = 3  # smaller than a patch: no token centre inside
    tokens, classes = box_regions(labels, patch=8, max_objects=4)
    assert tokens.shape == (1, 4, 4, 4) and classes.tolist() == [[3, 7, -1, -1]]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0:2, 2:4] = True
    assert torch.equal(tokens[0, 1], expected)
    assert tokens[0, 0].sum() == 1 and tokens[0, 0, 2, 0]  # the token nearest (20.5, 5.5)
    assert not tokens[0, 2:].any()


def test_region_loss_pools_each_box_and_ignores_missing_objects():
    torch.manual_seed(0)
    tokens = torch.randn(2, 4, 8, requires_grad=True)  # (B, h*w, D), a 2x2 grid
    regions = torch.zeros(2, 3, 2, 2, dtype=torch.bool)
    regions[0, 0, 0, :] = True
    regions[1, 0, :, 1] = True
    classes = torch.tensor([[1, -1, -1], [0, -1, -1]])
    phrases = torch.randn(3, 8)
    scale = torch.tensor(0.0)  # logit scale exp(0) = 1
    loss = region_loss(tokens, regions, classes, phrases, scale)
    pooled = torch.stack([tokens[0, :2].mean(0), tokens[1, [1, 3]].mean(0)])
    logits = torch.nn.functional.normalize(pooled, dim=-1) @ torch.nn.functional.normalize(phrases, dim=-1).t()
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0])))
    loss.backward()
    assert tokens.grad[0, 2:].abs().sum() == 0 and tokens.grad[0, :2].abs().sum() > 0


def test_one_pass_gives_the_cls_embedding_and_the_dense_tokens():
    clip = build_clip(tiny_clip_config(32, width=64, depth=3), seed=0).eval()
    images = torch.randn(2, 3, 32, 32)
    cls, tokens = embeddings_with_tokens(clip, images)
    assert torch.allclose(cls, clip.encode_image(images), atol=1e-6)
    assert torch.allclose(tokens, clip.encode_image_dense(images).tokens, atol=1e-6)


@pytest.mark.parametrize("single", [True, False])
def test_regions_are_flipped_with_their_images(single):
    images = torch.zeros(64, 3, 16, 16)
    images[:, :, :8, :8] = 1.0  # top-left patch lit
    regions = torch.zeros(64, 1, 2, 2, dtype=torch.bool)
    regions[:, 0, 0, 0] = True
    out, out_regions = _augment(images, torch.full((64,), single), torch.Generator().manual_seed(0), regions)
    lit = out[:, 0].reshape(64, 2, 8, 2, 8).mean((2, 4)) > 0.5  # which patch is lit, (B, 2, 2)
    assert torch.equal(lit, out_regions[:, 0])
    assert lit[:, 1, :].any()  # some vertical flips happened
    assert lit[:, :, 1].any() == single  # horizontal flips only for single objects


def test_token_region_loss_weights_each_box_token_by_its_group_probability():
    torch.manual_seed(0)
    tokens = torch.randn(1, 4, 8, requires_grad=True)  # a 2x2 grid
    regions = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    regions[0, 0, 0, :] = True  # tokens 0 and 1
    classes = torch.tensor([[2, -1]])
    phrases = torch.randn(4, 8)
    groups = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    scale = torch.tensor(0.0)
    loss = token_region_loss(tokens, regions, classes, phrases, scale, groups)
    logp = (torch.nn.functional.normalize(tokens[0, :2], dim=-1)
            @ torch.nn.functional.normalize(phrases, dim=-1).t()).log_softmax(-1)
    weight = logp.exp()[:, 2:].sum(-1)  # probability of class 2's group {2, 3}
    expected = -(weight / weight.sum() * logp[:, 2]).sum()
    assert torch.allclose(loss, expected.detach())
    loss.backward()
    assert tokens.grad[0, 2:].abs().sum() == 0 and tokens.grad[0, :2].abs().sum() > 0


def test_region_pooling_is_checked():
    from fgaseg.errors import ConfigError

    with pytest.raises(ConfigError, match="region_pooling"):
        PretrainConfig(region_pooling="max")


def test_pretraining_updates_only_the_token_rows_the_world_uses_and_returns_the_full_table():
    from fgaseg.synth.pretrain import PretrainConfig, compact_ids, pretrain_clip, tiny_clip_config
    from fgaseg.synth.world import WorldConfig

    config = PretrainConfig(steps=2, batch_size=8, num_images=16, clip=tiny_clip_config(32, 32, 1))
    before = build_clip(config.clip, seed=0).token_embedding.weight.detach().clone()
    clip, _ = pretrain_clip(config, WorldConfig(image_size=32), seed=0, progress=False)
    after = clip.token_embedding.weight.detach()
    assert after.shape == before.shape == (49408, 32)
    changed = (after != before).any(1)
    assert 0 < int(changed.sum()) < 100  # the world's few dozen tokens, EOT among them
    assert bool(changed[49407]) and torch.equal(after[~changed], before[~changed])
    used = torch.tensor([0, 5, 320, 49406, 49407])
    assert compact_ids(torch.tensor([[49406, 320, 5, 49407, 0]]), used).tolist() == [[3, 2, 1, 4, 0]]
