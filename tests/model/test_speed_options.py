"""Speed options keep the output: optimised blocks vs naive references, channels-last, bf16,
torch.compile, TopK re-use of decoded classes, text cached once, and the benchmark's report."""

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fgaseg.model.decoder as decoder_module
from fgaseg.model.swin_aggregation import SwinTransformerBlockWrapper, window_partition, window_reverse
from fgaseg.model.upsampling import Up

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_testing import make_tiny_model, names  # noqa: E402



def naive_swin_block(blk, x, g):
    """The official Swin block written directly: guidance concatenated to every class slice,
    roll, window partition, explicit masked softmax attention, reverse, un-roll."""
    B, T, H, W, C = x.shape
    ws, shift = blk.window_size, blk.shift_size
    Hp, Wp = blk.padded_resolution
    a = blk.attn
    y = blk.norm1(x).reshape(B * T, H, W, C)
    gg = g.unsqueeze(1).expand(B, T, H, W, g.shape[-1]).reshape(B * T, H, W, -1)
    y = F.pad(y, (0, 0, 0, Wp - W, 0, Hp - H))
    gg = F.pad(gg, (0, 0, 0, Wp - W, 0, Hp - H))
    if shift:
        y = torch.roll(y, (-shift, -shift), (1, 2))
        gg = torch.roll(gg, (-shift, -shift), (1, 2))
    yw = window_partition(y, ws)  # (N, nW, L, C)
    gw = window_partition(gg, ws)
    N, nW, L, _ = yw.shape
    yg = torch.cat([yw, gw], dim=-1)
    h = a.num_heads
    q = a.q(yg).reshape(N, nW, L, h, -1).transpose(2, 3)
    k = a.k(yg).reshape(N, nW, L, h, -1).transpose(2, 3)
    v = a.v(yw).reshape(N, nW, L, h, -1).transpose(2, 3)
    att = (q * a.scale) @ k.transpose(-1, -2)  # (N, nW, h, L, L)
    if blk.attn_mask is not None:
        att = att + blk.attn_mask[None, :, None]
    out = (att.softmax(-1) @ v).transpose(2, 3).reshape(N, nW, L, C)
    out = window_reverse(a.proj(out), ws, Hp, Wp)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    out = out[:, :H, :W].reshape(B, T, H, W, C)
    x = x + out
    return x + blk.mlp(blk.norm2(x))


def perturb_(module, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


@pytest.mark.parametrize("grid,window", [((8, 8), 4), ((5, 7), 4), ((3, 3), 12)])
def test_swin_wrapper_matches_naive_official_blocks(grid, window):
    torch.manual_seed(0)
    wrap = perturb_(SwinTransformerBlockWrapper(8, 6, grid, nheads=2, window_size=window)).eval()
    x, g = torch.randn(2, 8, 3, *grid), torch.randn(2, 6, *grid)
    with torch.no_grad():
        gn = wrap.guidance_norm(g.permute(0, 2, 3, 1))
        t = naive_swin_block(wrap.block_1, x.permute(0, 2, 3, 4, 1), gn)
        ref = naive_swin_block(wrap.block_2, t, gn).permute(0, 4, 1, 2, 3)
        assert torch.allclose(wrap(x, g), ref, atol=1e-5)
        assert torch.allclose(wrap(x, g, chunk_size=2), ref, atol=1e-5)
        # a single block through its grid-layout entry point
        assert torch.allclose(wrap.block_2(x.permute(0, 2, 3, 4, 1), gn),
                              naive_swin_block(wrap.block_2, x.permute(0, 2, 3, 4, 1), gn), atol=1e-5)


def test_up_block_matches_concatenated_guidance():
    torch.manual_seed(0)
    up = perturb_(Up(32, 16, 8), 0.1).eval()
    x, g = torch.randn(6, 32, 5, 4), torch.randn(2, 8, 10, 8)  # 2 images x 3 classes
    with torch.no_grad():
        ref = up.conv(torch.cat([up.up(x), g.repeat_interleave(3, dim=0)], dim=1))
        assert torch.allclose(up(x, g), ref, atol=1e-5)
        cl = up(x.contiguous(memory_format=torch.channels_last), g)
        assert torch.allclose(cl, ref, atol=1e-5)


def test_gradients_flow_through_optimised_blocks():
    model = make_tiny_model()
    model.train()
    x = torch.rand(1, 3, 64, 64)
    out = model(x, names(3), torch.randint(0, 3, (1, 64, 64)))
    out.loss.backward()
    for name in ("head.layers.0.swin_block.block_1.attn.q.weight", "head.layers.1.attention.attention.k.weight",
                 "head.decoder1.conv.double_conv.0.weight", "head.layers.0.attention.padding_tokens"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model()


def test_channels_last_model_gives_same_logits(tiny):
    x = torch.rand(1, 3, 64, 64)
    ref = tiny.segment_logits(x, names(5), topk=0)
    tiny.to(memory_format=torch.channels_last)
    try:
        out = tiny.segment_logits(x, names(5), topk=0)
    finally:
        tiny.to(memory_format=torch.contiguous_format)
    assert torch.allclose(out, ref, atol=1e-5)


def test_bf16_autocast_close_to_fp32(tiny):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    ref = tiny.segment_logits(x, names(7), topk=0)
    tiny.optimize_for_inference(bf16=True)
    try:
        out = tiny.segment_logits(x, names(7), topk=0)
    finally:
        tiny.optimize_for_inference()
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert not torch.equal(out, ref)  # bf16 really ran
    err = (out - ref).abs().max().item()
    assert err < 0.1 * ref.std().item() + 0.05
    # wherever fp32 is decided by more than twice the bf16 error, bf16 picks the same class
    top2 = ref.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 2 * err
    assert torch.equal(out.argmax(1)[decided], ref.argmax(1)[decided])
    assert not tiny.inference_options.bf16


def test_topk_reuses_decoded_survivors_exactly(tiny, monkeypatch):
    x = torch.rand(1, 3, 64, 64)
    cached = tiny.segment_logits(x, names(7), topk=2, chunk_size=3)
    monkeypatch.setattr(decoder_module, "_DECODE_CACHE_BYTES", 0)  # force the recompute path
    recomputed = tiny.segment_logits(x, names(7), topk=2, chunk_size=3)
    assert torch.allclose(cached, recomputed, atol=1e-6)
    assert (cached == tiny.config.pruned_logit).any()  # pruning happened
    monkeypatch.undo()
    assert torch.allclose(tiny.segment_logits(x, names(7), topk=2), cached, atol=1e-5)


def test_text_encoded_once_per_class_list(tiny, monkeypatch):
    calls = []
    original = tiny.clip.encode_text
    monkeypatch.setattr(tiny.clip, "encode_text", lambda ids: calls.append(len(ids)) or original(ids))
    tiny._text_cache.clear()
    x = torch.rand(1, 3, 64, 64)
    for _ in range(3):
        out = tiny.segment_logits(x, names(4))
    assert len(calls) == 1 and out.is_inference()
    tiny.segment_logits(x, names(5))
    assert len(calls) == 2


def _compiler_available() -> bool:
    return shutil.which("g++") is not None or shutil.which("c++") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.skipif(os.environ.get("FGASEG_TEST_COMPILE") != "1",
                    reason="compiling takes ~1 min on 2 cores; set FGASEG_TEST_COMPILE=1 to run")
def test_compiled_swin_block_matches_eager():
    torch.manual_seed(0)
    wrap = perturb_(SwinTransformerBlockWrapper(8, 6, (8, 8), nheads=2, window_size=4)).eval()
    x, g = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 6, 8, 8)
    with torch.inference_mode():
        ref = wrap(x, g)
        try:
            wrap.block_2.forward_windows = torch.compile(wrap.block_2.forward_windows, dynamic=True)
            out = wrap(x, g)
        except Exception as exc:  # pragma: no cover - depends on the toolchain
            pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
    assert torch.allclose(out, ref, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.skipif(os.environ.get("FGASEG_TEST_COMPILE") != "1",
                    reason="compiling takes minutes on 2 cores; set FGASEG_TEST_COMPILE=1 to run")
def test_compiled_model_on_two_threads_matches_eager():
    """Compiled blocks also run on the parallel-chunk worker threads (compiled once, under Dynamo's lock)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = make_tiny_model()
        images, classes = torch.rand(1, 3, 32, 32), names(9)
        eager = model.segment_logits(images, classes, chunk_size=1)
        model.optimize_for_inference(compile=True)
        compiled = [model.segment_logits(images, classes, chunk_size=1) for _ in range(2)]
    finally:
        torch.set_num_threads(before)
    for out in compiled:
        torch.testing.assert_close(out, eager, rtol=0, atol=1e-4)


def test_upsampling_fills_pruned_classes_exactly(tiny):
    low = torch.randn(2, 6, 5, 7)
    low[:, [1, 4]] = tiny.config.pruned_logit  # pruned in every image
    low[0, 2] = tiny.config.pruned_logit  # pruned in one image only: still interpolated
    ref = F.interpolate(low, size=(20, 28), mode="bilinear", align_corners=False)
    assert torch.allclose(tiny._upsample_scores(low, (20, 28)), ref, atol=1e-5)
    assert torch.allclose(tiny._upsample_scores(low[:, [0, 2, 3]], (20, 28)), ref[:, [0, 2, 3]], atol=1e-6)
