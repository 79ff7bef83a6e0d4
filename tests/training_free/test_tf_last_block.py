"""Last-block variants checked against independent paths (torch SDPA, the block's own forward)."""

import pytest
import torch
import torch.nn.functional as F

from fgaseg.clip.layers import ResidualAttentionBlock
from fgaseg.training_free.attention import gaussian_spatial_prior
from fgaseg.training_free.last_block import (
    LAST_BLOCKS,
    clearclip_last_block,
    maskclip_last_block,
    naclip_last_block,
    project_qkv_heads,
    sclip_last_block,
)

WIDTH, HEADS, GRID = 8, 2, (2, 3)
LENGTH = 1 + GRID[0] * GRID[1]


@pytest.fixture()
def block():
    torch.manual_seed(0)
    blk = ResidualAttentionBlock(WIDTH, HEADS)  # float32: CLIP LayerNorm computes in float32
    with torch.no_grad():
        for p in blk.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return blk


@pytest.fixture()
def x():
    torch.manual_seed(1)
    return torch.randn(2, LENGTH, WIDTH)


def merged(blk, out):
    b, h, length, d = out.shape
    return blk.attn.out_proj(out.transpose(1, 2).reshape(b, length, h * d))


def test_maskclip_equals_block_forward_with_identity_attention_mask(block, x):
    eye_mask = torch.full((LENGTH, LENGTH), float("-inf"), dtype=x.dtype).fill_diagonal_(0.0)
    expected = block(x, attn_mask=eye_mask)  # x + out_proj(v), then + mlp(ln_2(.))
    torch.testing.assert_close(maskclip_last_block(block, x, GRID), expected)


def test_clearclip_equals_vanilla_attention_when_keys_are_queries(block, x):
    with torch.no_grad():
        block.attn.k_proj_weight.copy_(block.attn.q_proj_weight)
        bias = block.attn.in_proj_bias
        bias[WIDTH : 2 * WIDTH] = bias[:WIDTH]
    expected = block.attn(block.ln_1(x))  # softmax(q k^T) v with k == q, no residual, no FFN
    torch.testing.assert_close(clearclip_last_block(block, x, GRID), expected)


def test_clearclip_matches_sdpa(block, x):
    q, k, v = project_qkv_heads(block, x)
    expected = merged(block, F.scaled_dot_product_attention(q, q, v))
    torch.testing.assert_close(clearclip_last_block(block, x, GRID), expected)


def test_sclip_matches_sdpa_with_residual_and_ffn(block, x):
    q, k, v = project_qkv_heads(block, x)
    attended = F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
    y = x + merged(block, attended)
    expected = y + block.mlp(block.ln_2(y))
    torch.testing.assert_close(sclip_last_block(block, x, GRID), expected)


def test_naclip_matches_sdpa_with_additive_prior(block, x):
    q, k, v = project_qkv_heads(block, x)
    prior = gaussian_spatial_prior(GRID, std=1.5).to(x.dtype)
    expected = merged(block, F.scaled_dot_product_attention(k, k, v, attn_mask=prior))
    torch.testing.assert_close(naclip_last_block(block, x, GRID, gaussian_std=1.5), expected)


def test_project_qkv_heads_matches_block_projection(block, x):
    q, k, v = project_qkv_heads(block, x)
    assert q.shape == (2, HEADS, LENGTH, WIDTH // HEADS)
    ref_q, ref_k, ref_v = block.attn.project_qkv(block.ln_1(x))
    for mine, ref in ((q, ref_q), (k, ref_k), (v, ref_v)):
        torch.testing.assert_close(mine.transpose(1, 2).reshape(2, LENGTH, WIDTH), ref)


def test_variants_differ(block, x):
    outs = {name: fn(block, x, GRID) for name, fn in LAST_BLOCKS.items()}
    names = sorted(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(outs[a], outs[b]), (a, b)
