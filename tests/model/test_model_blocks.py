"""Building blocks against hand-computed values and naive reference implementations."""

import math

import torch
import torch.nn.functional as F

from fgaseg.model.alignment_head import Projector, one_hot_targets, t2p_loss
from fgaseg.model.class_aggregation import ClassTransformerLayer
from fgaseg.model.cost_volume import Local_align, cosine_cost_volume, kernel_normalizer, preselect_classes
from fgaseg.model.dynamic_conv import per_class_conv2d
from fgaseg.model.p2tformer import P2Tformer
from fgaseg.model.sliding_window import make_plan, merge_views
from fgaseg.model.swin_aggregation import SwinTransformerBlockWrapper
from fgaseg.model.upsampling import Up
from fgaseg.model.topk import topk_class_mask


def bce(x, y):
    return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))


def test_one_hot_ignore_rows_are_zero():
    t = torch.tensor([[[0, 1], [255, 1]]])
    oh = one_hot_targets(t, 3)
    assert oh.shape == (1, 3, 2, 2)
    assert oh[0, :, 1, 0].tolist() == [0, 0, 0]
    assert oh[0, :, 0, 0].tolist() == [1, 0, 0] and oh[0, :, 1, 1].tolist() == [0, 1, 0]


def test_t2p_loss_by_hand():
    # 4x4 target, 2 classes, map 2x2: nearest downsampling picks pixels (0,0),(0,2),(2,0),(2,2)
    target = torch.tensor([[[0, 9, 1, 9], [9, 9, 9, 9], [255, 9, 1, 9], [9, 9, 9, 9]]])
    target[target == 9] = 0
    onehot = one_hot_targets(target, 2)
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]], [[-3.0, 1.0], [1.5, 2.5]]]])
    picked = {(0, 0): 0, (0, 1): 1, (1, 0): None, (1, 1): 1}  # class at each 2x2 cell; None = ignore
    terms = []
    for c in range(2):
        for (i, j), cls in picked.items():
            terms.append(bce(logits[0, c, i, j].item(), 1.0 if cls == c else 0.0))
    expected = sum(terms) / len(terms)
    assert abs(t2p_loss(logits, onehot).item() - expected) < 1e-6


def test_gcs_cosine_by_hand():
    img = torch.tensor([[[[3.0, 0.0]], [[4.0, 2.0]]]])  # (1, C=2, 1, 2): pixels (3,4) and (0,2)
    text = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])  # (1, T=2, P=1, C=2)
    cost = cosine_cost_volume(img, text)
    assert cost.shape == (1, 1, 2, 1, 2)
    expected = [[0.6, 0.0], [7 / 5 / math.sqrt(2), 1 / math.sqrt(2)]]
    assert torch.allclose(cost[0, 0, :, 0], torch.tensor(expected), atol=1e-6)


def test_lcs_kernel_normalizer_is_a_distribution():
    w = kernel_normalizer(torch.randn(4, 2 * 9), 3)
    assert w.shape == (4, 2, 3, 3)
    assert torch.allclose(w.sum(dim=(-1, -2)), torch.ones(4, 2), atol=1e-6)
    assert (w > 0).all()


def test_lcs_by_hand_uniform_kernel():
    # txt weights zero -> every kernel tap is 1/9; bias b. Output = mean over the zero-padded
    # 3x3 window of sum_c normalize(img)_c, plus b.
    la = Local_align(word_dim=2, vision_dim=2, kernel_size=3)
    with torch.no_grad():
        la.txt.weight.zero_()
        la.txt.bias.zero_()
        la.txt.bias[-1] = 0.25
    img = torch.zeros(1, 2, 3, 3)
    img[0, 0] = 1.0  # every pixel is the unit vector (1, 0): channel sum 1
    img[0, :, 1, 1] = torch.tensor([3.0, 4.0])  # centre (0.6, 0.8): channel sum 1.4
    out = la(img, torch.ones(1, 1, 1, 2))
    assert out.shape == (1, 1, 1, 3, 3)
    assert abs(out[0, 0, 0, 1, 1].item() - ((8 * 1.0 + 1.4) / 9 + 0.25)) < 1e-6
    assert abs(out[0, 0, 0, 0, 0].item() - ((3 * 1.0 + 1.4) / 9 + 0.25)) < 1e-6  # corner: 4 taps inside


def test_grouped_conv_equals_per_class_loop():
    g = torch.Generator().manual_seed(0)
    feats, w, b = torch.randn(2, 5, 6, 7, generator=g), torch.randn(2, 4, 5, 3, 3, generator=g), torch.randn(2, 4, generator=g)
    out = per_class_conv2d(feats, w, b)
    loop = torch.stack([torch.cat([F.conv2d(feats[i:i + 1], w[i, n:n + 1], b[i, n:n + 1], padding=1)
                                   for n in range(4)], dim=1)[0] for i in range(2)])
    assert torch.allclose(out, loop, atol=1e-5)


def test_projector_shapes():
    p = Projector(word_dim=16, vision_dim=8).eval()
    out = p(torch.randn(2, 16, 5, 6), torch.randn(2, 3, 16))
    assert out.shape == (2, 3, 20, 24)


def test_p2tformer_classes_independent_and_chunkable():
    torch.manual_seed(0)
    m = P2Tformer(16, nhead=4, num_layers=2).eval()
    img, text = torch.randn(2, 16, 4, 5), torch.randn(7, 1, 16)
    full = m(img, text)
    assert full.shape == (2, 7, 1, 16)
    perm = torch.randperm(7)
    assert torch.allclose(m(img, text[perm]), full[:, perm], atol=1e-5)
    assert torch.allclose(m(img, text, chunk_size=2), full, atol=1e-5)
    assert torch.allclose(m(img, text[:1]), full[:, :1], atol=1e-5)


def naive_class_layer(layer, x, guidance):
    """The official ClassTransformerLayer written directly: explicit padding tokens, per-pixel
    linear attention over the padded sequence (eval pooling 1x1)."""
    B, C, T, H, W = x.shape
    pad = layer.pad_len - T
    seq = x.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)
    g = guidance.repeat_interleave(H * W, dim=0)
    if pad > 0:
        seq = torch.cat([seq, layer.padding_tokens.expand(B * H * W, pad, C)], dim=1)
        g = torch.cat([g, layer.padding_guidance.expand(B * H * W, pad, -1)], dim=1)
    a = layer.attention
    y = layer.norm1(seq)
    q, k, v = a.q(torch.cat([y, g], -1)), a.k(torch.cat([y, g], -1)), a.v(y)
    h = a.nheads
    q, k, v = [t.reshape(*t.shape[:2], h, -1) for t in (q, k, v)]
    Q, K = F.elu(q) + 1, F.elu(k) + 1
    S = v.shape[1]
    KV = torch.einsum("nshd,nshv->nhdv", K, v / S)
    Z = 1 / (torch.einsum("nlhd,nhd->nlh", Q, K.sum(1)) + 1e-6)
    out = torch.einsum("nlhd,nhdv,nlh->nlhv", Q, KV, Z) * S
    seq = seq + out.reshape(*seq.shape)
    seq = seq + layer.MLP(layer.norm2(seq))
    seq = seq[:, :T].reshape(B, H, W, T, C).permute(0, 4, 3, 1, 2)
    return x + seq


def test_class_aggregation_matches_naive_padding_and_chunks():
    torch.manual_seed(0)
    layer = ClassTransformerLayer(hidden_dim=8, guidance_dim=4, nheads=2, pad_len=11).eval()
    with torch.no_grad():
        layer.padding_tokens.normal_()
        layer.padding_guidance.normal_()
    x, g = torch.randn(2, 8, 5, 3, 4), torch.randn(2, 5, 4)
    ref = naive_class_layer(layer, x, g)
    assert torch.allclose(layer(x, g), ref, atol=1e-5)
    assert torch.allclose(layer(x, g, chunk_size=2), ref, atol=1e-5)
    perm = torch.randperm(5)
    assert torch.allclose(layer(x[:, :, perm], g[:, perm]), ref[:, :, perm], atol=1e-5)


def test_class_aggregation_pixel_chunks_match_naive(monkeypatch):
    """Inference runs in chunks of pixels (here one pixel at a time, ragged last chunk)."""
    import fgaseg.model.class_aggregation as ca

    torch.manual_seed(1)
    layer = ClassTransformerLayer(hidden_dim=8, guidance_dim=4, nheads=2, pad_len=11).eval()
    with torch.no_grad():
        layer.padding_tokens.normal_()
        layer.padding_guidance.normal_()
    x, g = torch.randn(2, 8, 5, 3, 4), torch.randn(2, 5, 4)
    ref = naive_class_layer(layer, x, g)
    for rows in (7, 25):  # 1 and 2 pixels per chunk (12 pixels)
        monkeypatch.setattr(ca, "_ROWS", rows)
        with torch.inference_mode():
            assert torch.allclose(layer(x, g), ref, atol=1e-5)


def test_swin_padded_grid_and_chunks():
    torch.manual_seed(0)
    # 5x7 grid with window 4: padded to 8x8 internally; shifted block masks padding
    wrap = SwinTransformerBlockWrapper(8, 6, (5, 7), nheads=2, window_size=4).eval()
    x, g = torch.randn(2, 8, 3, 5, 7), torch.randn(2, 6, 5, 7)
    out = wrap(x, g)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.allclose(wrap(x, g, chunk_size=1), out, atol=1e-5)
    assert torch.allclose(wrap(x[:, :, [2, 0, 1]], g), out[:, :, [2, 0, 1]], atol=1e-5)
    # window larger than the grid: one window, no shift (official rule)
    assert SwinTransformerBlockWrapper(8, 6, (3, 3), 2, 12).block_2.shift_size == 0


def test_preselection_keeps_best_classes():
    cost = torch.zeros(2, 1, 5, 2, 2)
    cost[0, 0, [1, 3], 0, 0] = 1.0
    cost[1, 0, [4, 0], 1, 1] = 1.0
    assert preselect_classes(cost, 2).sort(dim=-1)[0].tolist() == [[1, 3], [0, 4]]


def test_topk_union_over_pixels_and_batch():
    aux = torch.full((2, 4, 1, 2), -5.0)
    aux[0, 1, 0, 0] = 3.0
    aux[1, 2, 0, 1] = 3.0
    aux[0, 3, 0, 1] = 2.0
    aux[1, 1, 0, 0] = 1.0
    assert topk_class_mask(aux, 1).tolist() == [False, True, True, True]
    assert topk_class_mask(aux, 4).all()
    assert topk_class_mask(aux, 4).all()


def test_sliding_merge_matches_fold_unfold():
    plan = make_plan(6, overlap=1 / 3, resize=10)  # stride 4 -> 2 x 2 crops, exact tiling
    assert plan.positions == ((0, 0), (0, 4), (4, 0), (4, 4))
    assert make_plan(384, 0.333, 640).positions == ((0, 0), (0, 256), (256, 0), (256, 256))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, 6, 6, generator=g)
    merged = merge_views(logits, plan, (10, 10))
    probs = logits.sigmoid()
    fold, unfold = torch.nn.Fold((10, 10), 6, stride=4), torch.nn.Unfold(6, stride=4)
    crops = fold(probs[:-1].flatten(1).T) / fold(unfold(torch.ones(1, 10, 10)))
    glob = F.interpolate(probs[-1:], size=(10, 10), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(merged, (crops + glob) / 2, atol=1e-6)


def test_copies_of_a_class_tie_exactly():
    from fgaseg.model.topk import duplicate_ids, first_positions, tie_copies

    text = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0], [3.0, 4.0]])
    assert duplicate_ids(text).tolist() == [0, 1, 0, 3, 1]
    assert first_positions(torch.tensor([[5, 3, 5, 3, 7], [1, 1, 2, 0, 2]])).tolist() == [[0, 1, 0, 1, 4],
                                                                                          [0, 0, 2, 3, 2]]
    # class 2 is a copy of class 0 whose score came out 1 ulp higher (chunked kernels); both tie
    # with class 1 at the top-1 boundary: ranked as exact copies, class 0 wins as in the
    # official code (where copies are bit-identical), not the copy
    aux = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.5]).view(1, 5, 1, 1)
    aux[0, 2] = torch.nextafter(aux[0, 2], torch.tensor(2.0))
    first = first_positions(duplicate_ids(text))
    tied = tie_copies(aux, first)
    assert tied[0, 2] == tied[0, 0]
    assert topk_class_mask(aux, 1, first).tolist() == topk_class_mask(tied, 1).tolist()
    assert not topk_class_mask(aux, 1, first)[2]
    assert topk_class_mask(aux, 1)[2]  # without the copies rule the 1-ulp copy would win


def test_up_block_inference_fold_matches_the_two_convolutions():
    """At inference the transposed conv and the first 3x3 conv of an Up-block run as one folded
    2x2 convolution per output phase; with autograd they run as written. Same maths."""
    torch.manual_seed(0)
    for guidance_channels in (8, 0):
        up = Up(24, 32, guidance_channels).eval()
        for p in up.parameters():
            torch.nn.init.normal_(p, std=0.2)
        x = torch.randn(6, 24, 5, 7).contiguous(memory_format=torch.channels_last)
        g = torch.randn(2, guidance_channels, 10, 14) if guidance_channels else None
        ref = up(x, g)  # grad enabled: transposed conv, then 3x3 conv
        assert ref.requires_grad
        with torch.no_grad():
            folded = up(x, g)
            shared = up(x, share=up.guidance_share(g)) if g is not None else folded
        assert torch.allclose(folded, ref, atol=2e-6) and torch.allclose(shared, ref, atol=2e-6)
        with torch.no_grad():  # the cached fold follows in-place weight changes
            up.up.weight.mul_(0.5)
            up.up.bias.add_(0.1)
        ref = up(x, g)
        with torch.no_grad():
            assert torch.allclose(up(x, g), ref, atol=2e-6)
