"""A functional reference of the official CAT-Seg / FGA-seg prediction head, on official names.

Written for the tests from the architecture rules read in the official code (CAT-Seg
``Aggregator``, FGA-seg ``Decoder`` / ``Decoder_fast`` training path, ``Local_align``,
``P2Tformer``); it imports and runs no official code. Every function takes the official
``model`` dict (``sd``) and reads the tensors by their official names, so comparing it with
fgaseg's modules loaded through the converter checks the names *and* what each tensor does.
Shapes: B images, T classes, P templates, C CLIP embed dim, (H, W) token grid.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

HEAD = "sem_seg_head.predictor.transformer."
P2T = "sem_seg_head.predictor.DCDT."


def _lin(sd: Dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def _ln(sd: Dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"])


def _conv(sd, name, x, padding):
    return F.conv2d(x, sd[name + ".weight"], sd.get(name + ".bias"), padding=padding)


# ----------------------------------------------------------------------------- spatial (Swin)
def swin_block(sd, p: str, x, guidance, grid: Tuple[int, int], window: int, shift: int, heads: int):
    """One Swin block with guidance concatenated for q/k. ``x (N, H*W, C)``, ``guidance (N, H*W, G)``."""
    H, W = grid
    N, L, C = x.shape
    h = torch.cat([_ln(sd, p + "norm1", x), guidance], dim=-1).view(N, H, W, -1)
    if shift:
        h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
    nh, nw = H // window, W // window
    win = h.view(N, nh, window, nw, window, -1).permute(0, 1, 3, 2, 4, 5).reshape(N * nh * nw, window * window, -1)
    n = window * window

    def heads_of(t):
        return t.reshape(t.shape[0], n, heads, -1).transpose(1, 2)

    q = heads_of(_lin(sd, p + "attn.q", win))
    k = heads_of(_lin(sd, p + "attn.k", win))
    v = heads_of(_lin(sd, p + "attn.v", win[..., :C]))
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if shift:
        mask = sd[p + "attn_mask"]  # (windows, n, n), windows in row-major order per image
        scores = (scores.view(N, nh * nw, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, C)
    out = _lin(sd, p + "attn.proj", out)
    out = out.view(N, nh, nw, window, window, C).permute(0, 1, 3, 2, 4, 5).reshape(N, H, W, C)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    x = x + out.reshape(N, L, C)
    return x + _lin(sd, p + "mlp.fc2", F.gelu(_lin(sd, p + "mlp.fc1", _ln(sd, p + "norm2", x))))


def spatial_aggregation(sd, p: str, x, app_guidance, window: int, heads: int):
    """``x (B, C, T, H, W)``, ``app_guidance (B, G, H, W)`` -> ``(B, C, T, H, W)``."""
    B, C, T, H, W = x.shape
    seq = x.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)
    g = app_guidance.permute(0, 2, 3, 1).reshape(B, 1, H * W, -1).expand(B, T, H * W, -1).reshape(B * T, H * W, -1)
    g = _ln(sd, p + "guidance_norm", g)
    seq = swin_block(sd, p + "block_1.", seq, g, (H, W), window, 0, heads)
    seq = swin_block(sd, p + "block_2.", seq, g, (H, W), window, window // 2, heads)
    return seq.view(B, T, H, W, C).permute(0, 4, 1, 2, 3)


# ----------------------------------------------------------------------------- class aggregation
def linear_attention(q, k, v, eps: float = 1e-6):
    """Linear attention with the elu+1 feature map; ``(N, L, heads, d)`` each."""
    Q, K = F.elu(q) + 1, F.elu(k) + 1
    length = v.shape[1]
    kv = torch.einsum("nshd,nshv->nhdv", K, v / length)
    z = 1.0 / (torch.einsum("nlhd,nhd->nlh", Q, K.sum(dim=1)) + eps)
    return torch.einsum("nlhd,nhdv,nlh->nlhv", Q, kv, z) * length


def class_aggregation(sd, p: str, x, text_guidance, pad_len: int, heads: int, pool: int = 1):
    """``x (B, C, T, H, W)``, ``text_guidance (B, T, G)`` -> ``(B, C, T, H, W)``."""
    B, C, T, H, W = x.shape
    pooled = x
    if pool > 1:
        pooled = F.avg_pool2d(x.transpose(1, 2).reshape(B * T, C, H, W), pool)
        pooled = pooled.view(B, T, C, *pooled.shape[-2:]).transpose(1, 2)
    h, w = pooled.shape[-2:]
    guidance = text_guidance
    if pad_len > 0 and T < pad_len:
        extra = pad_len - T
        pooled = torch.cat([pooled, sd[p + "padding_tokens"].view(1, C, 1, 1, 1).expand(B, C, extra, h, w)], dim=2)
        guidance = torch.cat([guidance, sd[p + "padding_guidance"].view(1, 1, -1).expand(B, extra, -1)], dim=1)
    Tp = pooled.shape[2]
    seq = pooled.permute(0, 3, 4, 2, 1).reshape(B * h * w, Tp, C)
    g = guidance[:, None, None].expand(B, h, w, Tp, guidance.shape[-1]).reshape(B * h * w, Tp, -1)
    normed = _ln(sd, p + "norm1", seq)
    qk_in = torch.cat([normed, g], dim=-1)
    q = _lin(sd, p + "attention.q", qk_in).view(B * h * w, Tp, heads, -1)
    k = _lin(sd, p + "attention.k", qk_in).view(B * h * w, Tp, heads, -1)
    v = _lin(sd, p + "attention.v", normed).view(B * h * w, Tp, heads, -1)
    seq = seq + linear_attention(q, k, v).reshape(B * h * w, Tp, C)
    seq = seq + _lin(sd, p + "MLP.2", F.relu(_lin(sd, p + "MLP.0", _ln(sd, p + "norm2", seq))))
    out = seq.view(B, h, w, Tp, C).permute(0, 3, 4, 1, 2).reshape(B * Tp, C, h, w)
    out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=True)
    out = out.view(B, Tp, C, H, W).transpose(1, 2)[:, :, :T]
    return x + out


# ----------------------------------------------------------------------------- decoder
def double_conv(sd, p: str, x):
    for conv, norm in (("0", "1"), ("3", "4")):
        x = _conv(sd, p + conv, x, 1)
        groups = x.shape[1] // 16
        x = F.relu(F.group_norm(x, groups, sd[p + norm + ".weight"], sd[p + norm + ".bias"]))
    return x


def up_block(sd, p: str, x, guidance):
    """``x (B*T, C, h, w)``, ``guidance (B, G, 2h, 2w)`` (repeated per class, image-major)."""
    x = F.conv_transpose2d(x, sd[p + "up.weight"], sd[p + "up.bias"], stride=2)
    T = x.shape[0] // guidance.shape[0]
    x = torch.cat([x, guidance.repeat_interleave(T, dim=0)], dim=1)
    return double_conv(sd, p + "conv.double_conv.", x)


def local_alignment(sd, p: str, img, text, kernel: int):
    """LCS: ``img (B, C, H, W)``, ``text (B, T, 1, C)`` -> ``(B, 1, T, H, W)``."""
    img = F.normalize(img, dim=1)
    params = _lin(sd, p + "Local_align.txt", F.normalize(text, dim=-1))[:, :, 0]  # (B, T, C*k*k + 1)
    out = []
    for b in range(img.shape[0]):
        weight = params[b, :, :-1].reshape(params.shape[1], img.shape[1], kernel * kernel).softmax(dim=-1)
        weight = weight.view(params.shape[1], img.shape[1], kernel, kernel)
        weight = weight / weight.sum(dim=(-1, -2), keepdim=True)
        out.append(F.conv2d(img[b:b + 1], weight, params[b, :, -1], padding=kernel // 2))
    return torch.cat(out, dim=0).unsqueeze(1)


def _embed(sd, name, cost):
    B, P, T, H, W = cost.shape
    y = _conv(sd, name, cost.transpose(1, 2).reshape(B * T, P, H, W), 3)
    return y.view(B, T, -1, H, W).transpose(1, 2)


def _fuse(sd, name: Optional[str], x, local, fusion: str, dim: int = 1):
    if fusion == "add":
        return x + local
    return _lin(sd, name, torch.cat([x, local], dim=dim).movedim(dim, -1)).movedim(-1, dim)


def reference_head(sd, img, text, res4, res5, *, family: str, fusion: str = "cat", kernel: int = 3,
                   num_layers: int = 2, pad_len: int = 256, window: int = 12, heads: int = 4,
                   pool: int = 1) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Logits ``(B, T, 4H, 4W)`` and the three aux logits (FGA-seg fast training path; empty for
    CAT-Seg) of ``Aggregator`` / ``Decoder(_fast)``.

    ``img (B, C, H, W)``: dense CLIP embedding (also appearance guidance ``res3``);
    ``text (B, T, P, C)``; ``res4 (B, 256, 2H, 2W)``, ``res5 (B, 128, 4H, 4W)``: upsampled
    CLIP block features.
    """
    p = HEAD
    fga = family == "fgaseg"
    B, T = text.shape[:2]
    cost = torch.einsum("bchw,btpc->bpthw", F.normalize(img, dim=1), F.normalize(text, dim=-1))
    selected = None
    if pad_len > 0 and T > pad_len:
        best = cost.permute(0, 2, 1, 3, 4).flatten(-3).max(dim=-1)[0]
        selected = best.topk(pad_len, dim=-1, sorted=False)[1]
        text = torch.gather(F.normalize(text, dim=-1), 1,
                            selected[..., None, None].expand(-1, -1, text.shape[2], text.shape[3]))
        cost = torch.einsum("bchw,btpc->bpthw", F.normalize(img, dim=1), text)
    x = _embed(sd, p + "conv1", cost)
    local = _embed(sd, p + "conv2", local_alignment(sd, p, img, text, kernel)) if fga else None
    app = F.relu(_conv(sd, p + "guidance_projection.0", img, 1))
    dec = [F.relu(_conv(sd, p + f"decoder_guidance_projection.{i}.0", g, 1)) for i, g in enumerate((res4, res5))]
    text_g = F.relu(_lin(sd, p + "text_guidance_projection.0", F.normalize(text.mean(dim=-2), dim=-1)))
    aux: List[torch.Tensor] = []
    Bx = x.shape[0]
    if fga:
        x = _fuse(sd, p + "conv_cat", x, local, fusion)
        if p + "head_auxi_0.weight" in sd:
            aux.append(_conv(sd, p + "head_auxi_0", x.transpose(1, 2).flatten(0, 1), 1).view(Bx, -1, *x.shape[-2:]))
    for i in range(num_layers):
        x = spatial_aggregation(sd, f"{p}layers.{i}.swin_block.", x, app, window, heads)
        x = class_aggregation(sd, f"{p}layers.{i}.attention.", x, text_g, pad_len, heads, pool)
    slices = x.transpose(1, 2).flatten(0, 1)
    if fga:
        local_slices = local.transpose(1, 2).flatten(0, 1)
        slices = _fuse(sd, p + "conv_cat_decoder_1", slices, local_slices, fusion)
        if aux:
            aux.append(_conv(sd, p + "head_auxi_1", slices, 1).view(Bx, -1, *slices.shape[-2:]))
    y = up_block(sd, p + "decoder1.", slices, dec[0])
    if fga:
        lp = p + "corr_local_decoder_projection."
        l2 = F.conv_transpose2d(local_slices, sd[lp + "0.weight"], sd[lp + "0.bias"], stride=2)
        l2 = F.relu(double_conv(sd, lp + "1.double_conv.", l2))
        y = _fuse(sd, p + "conv_cat_decoder_2", y, l2, fusion)
        if aux:
            aux.append(_conv(sd, p + "head_auxi_2", y, 1).view(Bx, -1, *y.shape[-2:]))
    y = up_block(sd, p + "decoder2.", y, dec[1])
    logits = _conv(sd, p + "head", y, 1).view(Bx, -1, *y.shape[-2:])

    def scatter(values):
        if selected is None:
            return values
        out = values.new_full((values.shape[0], T, *values.shape[2:]), -100.0)
        return out.scatter(1, selected[..., None, None].expand(-1, -1, *values.shape[2:]), values)

    return scatter(logits), [scatter(a) for a in aux]


# ----------------------------------------------------------------------------- P2Tformer
def sine_position(B: int, C: int, H: int, W: int) -> torch.Tensor:
    """DETR's normalised 2-D sine embedding with C/2 features per axis -> ``(B, C, H, W)``."""
    feats = C // 2
    y = torch.arange(1, H + 1, dtype=torch.float32)[:, None].expand(H, W)
    x = torch.arange(1, W + 1, dtype=torch.float32)[None, :].expand(H, W)
    y = y / (H + 1e-6) * 2 * math.pi
    x = x / (W + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(feats) // 2).float() / feats)

    def encode(pos):
        angles = pos[..., None] / dim_t  # (H, W, feats)
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    pos = torch.cat([encode(y), encode(x)], dim=-1).permute(2, 0, 1)
    return pos.unsqueeze(0).expand(B, -1, -1, -1)


def reference_p2tformer(sd, img, text, heads: int = 8) -> torch.Tensor:
    """Refined text ``(B, T, 1, C)`` from ``img (B, C, H, W)`` and CLIP text ``(T, 1, C)``."""
    B, C, H, W = img.shape
    memory = img.flatten(2).permute(2, 0, 1)  # (HW, B, C)
    pos = sine_position(B, C, H, W).flatten(2).permute(2, 0, 1)
    base = text.repeat(1, B, 1)  # (T, B, C)
    tgt = base.clone()
    layers = sorted({int(k[len(P2T + "cross_atten_text."):].split(".")[0]) for k in sd if k.startswith(P2T + "cross_atten_text.")})
    for i in layers:
        q = f"{P2T}cross_atten_text.{i}."
        attended = F.multi_head_attention_forward(
            tgt, memory + pos, memory, C, heads,
            sd[q + "multihead_attn.in_proj_weight"], sd[q + "multihead_attn.in_proj_bias"],
            None, None, False, 0.0,
            sd[q + "multihead_attn.out_proj.weight"], sd[q + "multihead_attn.out_proj.bias"],
            training=False, need_weights=False)[0]
        tgt = _ln(sd, q + "norm", tgt + _lin(sd, q + "MLP", attended))
    refined = base + sd[P2T + "gamma_text"] * tgt  # (T, B, C)
    return refined.unsqueeze(0).transpose(2, 0)  # (B, T, 1, C)


# ----------------------------------------------------------------------------- CLIP (model_vpt)
CLIP = "sem_seg_head.predictor.clip_model."
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _clip_attention(sd, p: str, x, heads: int, mask=None):
    """``nn.MultiheadAttention`` with separate q/k/v weights and a packed bias; ``x (L, N, W)``."""
    W = x.shape[-1]
    return F.multi_head_attention_forward(
        x, x, x, W, heads, None, sd[p + "attn.in_proj_bias"], None, None, False, 0.0,
        sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], training=False,
        need_weights=False, attn_mask=mask, use_separate_proj_weight=True,
        q_proj_weight=sd[p + "attn.q_proj_weight"], k_proj_weight=sd[p + "attn.k_proj_weight"],
        v_proj_weight=sd[p + "attn.v_proj_weight"])[0]


def _clip_mlp(sd, p: str, x):
    h = _lin(sd, p + "mlp.c_fc", x)
    return _lin(sd, p + "mlp.c_proj", h * torch.sigmoid(1.702 * h))


def _clip_block(sd, p: str, x, heads: int, mask=None):
    x = x + _clip_attention(sd, p, _ln(sd, p + "ln_1", x), heads, mask)
    return x + _clip_mlp(sd, p, _ln(sd, p + "ln_2", x))


def _clip_block_dense(sd, p: str, x):
    """The last visual block in dense mode: value path + input CLS, then the MLP."""
    W = x.shape[-1]
    y = F.linear(_ln(sd, p + "ln_1", x),
                 torch.cat([sd[p + "attn.q_proj_weight"], sd[p + "attn.k_proj_weight"], sd[p + "attn.v_proj_weight"]]),
                 sd[p + "attn.in_proj_bias"])
    v = _lin(sd, p + "attn.out_proj", y[..., 2 * W:]) + x[:1]
    return v + _clip_mlp(sd, p, _ln(sd, p + "ln_2", v))


def reference_image_features(sd, images, *, resolution: int, guidance_layers: Tuple[int, int],
                             upsample: bool = True, normalize: bool = True):
    """``images (B, 3, H, W)`` in [0, 1] -> ``(res3 (B, E, h, w), res4, res5)`` as CATSeg.forward
    builds them (CLIP-normalise, bilinear resize, dense CLIP, hooks on two blocks, upsample1/2).
    ``normalize=False``: ``images`` are already CLIP-normalised (only resized here)."""
    v = CLIP + "visual."
    if normalize:
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        images = (images - mean) / std
    x = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    conv = sd[v + "conv1.weight"]
    patch, width = conv.shape[-1], conv.shape[0]
    x = F.conv2d(x, conv, stride=patch)
    B, _, g, _ = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[v + "class_embedding"].view(1, 1, -1).expand(B, 1, width), x], dim=1)
    pos = sd[v + "positional_embedding"]
    side = int(round((pos.shape[0] - 1) ** 0.5))
    grid = pos[1:].reshape(1, side, side, width).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False).reshape(width, -1).t()
    x = _ln(sd, v + "ln_pre", x + torch.cat([pos[:1], grid]))
    x = x.transpose(0, 1)  # (L, B, W)
    heads = width // 64
    blocks = sorted({int(k[len(v + "transformer.resblocks."):].split(".")[0])
                     for k in sd if k.startswith(v + "transformer.resblocks.")})
    hooked = []
    for i in blocks[:-1]:
        x = _clip_block(sd, f"{v}transformer.resblocks.{i}.", x, heads)
        if i in guidance_layers:
            hooked.append(x)
    x = _clip_block_dense(sd, f"{v}transformer.resblocks.{blocks[-1]}.", x).transpose(0, 1)
    tokens = _ln(sd, v + "ln_post", x) @ sd[v + "proj"]  # (B, L, E)

    def token_map(t):  # (B, 1 + g*g, C) -> (B, C, g, g), CLS dropped
        return t[:, 1:].transpose(1, 2).reshape(B, -1, g, g)

    res3 = token_map(tokens)
    res4, res5 = (token_map(h.transpose(0, 1)) for h in hooked)
    if upsample:
        res4 = F.conv_transpose2d(res4, sd["upsample1.weight"], sd["upsample1.bias"], stride=2)
        res5 = F.conv_transpose2d(res5, sd["upsample2.weight"], sd["upsample2.bias"], stride=4)
    return res3, res4, res5


def reference_text(sd, token_ids) -> torch.Tensor:
    """CLIP text features of ``token_ids (N, 77)``, L2-normalised -> ``(N, E)``."""
    x = sd[CLIP + "token_embedding.weight"][token_ids] + sd[CLIP + "positional_embedding"]
    x = x.transpose(0, 1)
    L, width = x.shape[0], x.shape[-1]
    mask = torch.full((L, L), float("-inf")).triu_(1)
    blocks = sorted({int(k[len(CLIP + "transformer.resblocks."):].split(".")[0])
                     for k in sd if k.startswith(CLIP + "transformer.resblocks.")})
    for i in blocks:
        x = _clip_block(sd, f"{CLIP}transformer.resblocks.{i}.", x, width // 64, mask)
    x = _ln(sd, CLIP + "ln_final", x.transpose(0, 1))
    feats = x[torch.arange(x.shape[0]), token_ids.argmax(dim=-1)] @ sd[CLIP + "text_projection"]
    return F.normalize(feats, dim=-1)


# ----------------------------------------------------------------------------- fast inference (TopK)
def reference_valid_idx(mask, topk: int):
    """``Decoder_fast.get_valid_idx_from_mask``: ``mask (B, T, H, W)`` -> bool ``(B, T)``, the
    same row for every image: classes among the top-``topk`` of some pixel of some image, ranked
    with ``torch.argsort(mask, dim=1, descending=True)``."""
    T, B = mask.size(1), mask.size(0)
    order = torch.argsort(mask, dim=1, descending=True)
    order = order[:, :topk].reshape(-1)
    return (torch.bincount(order, minlength=T) > 0).repeat(B, 1)


def reference_preselect(cost, pad_len: int):
    """``Decoder_fast.forward`` pre-selection: ``cost (B, P, T, H, W)`` -> ``(B, pad_len)``, the
    unsorted indices of ``topk(sorted=False)`` on the max cosine score of every class."""
    best = cost.permute(0, 2, 1, 3, 4).flatten(-3).max(dim=-1)[0]
    return best.topk(pad_len, dim=-1, sorted=False)[1]


def reference_fast_inference(sd, img, text, res4, res5, *, kernel: int = 3, num_layers: int = 2,
                             pad_len: int = 256, window: int = 12, heads: int = 4, topk: int = 16):
    """``Decoder_fast.forward`` in eval mode (``conv_decoder_inference``, ``select_topk``).

    Returns ``(B, T, 4H, 4W)``: ``sigmoid(logit)`` for kept classes, 0 for TopK-pruned ones,
    -100 for classes left out by the pre-selection (each image / view selects its own; the
    TopK masks are shared by the views position by position). Always ``cat`` fusion.
    """
    p = HEAD
    B, T = text.shape[:2]
    cost = torch.einsum("bchw,btpc->bpthw", F.normalize(img, dim=1), F.normalize(text, dim=-1))
    classes = None
    if pad_len > 0 and T > pad_len:
        classes = reference_preselect(cost, pad_len)
        text = torch.gather(F.normalize(text, dim=-1), 1,
                            classes[..., None, None].expand(-1, -1, text.shape[2], text.shape[3]))
        cost = torch.einsum("bchw,btpc->bpthw", F.normalize(img, dim=1), text)
    x = _embed(sd, p + "conv1", cost)
    local = _embed(sd, p + "conv2", local_alignment(sd, p, img, text, kernel))
    app = F.relu(_conv(sd, p + "guidance_projection.0", img, 1))
    dec = [F.relu(_conv(sd, p + f"decoder_guidance_projection.{i}.0", g, 1)) for i, g in enumerate((res4, res5))]
    text_g = F.relu(_lin(sd, p + "text_guidance_projection.0", F.normalize(text.mean(dim=-2), dim=-1)))
    Tc = x.shape[2]
    x = _fuse(sd, p + "conv_cat", x, local, "cat")
    aux0 = _conv(sd, p + "head_auxi_0", x.transpose(1, 2).flatten(0, 1), 1).view(B, Tc, *x.shape[-2:])
    valid0 = reference_valid_idx(aux0, topk)  # (B, Tc)
    x = torch.stack([x[i, :, valid0[i]] for i in range(B)], dim=0)
    text_g = torch.stack([text_g[i, valid0[i]] for i in range(B)], dim=0)
    for i in range(num_layers):
        x = spatial_aggregation(sd, f"{p}layers.{i}.swin_block.", x, app, window, heads)
        x = class_aggregation(sd, f"{p}layers.{i}.attention.", x, text_g, pad_len, heads, 1)
    slices = x.transpose(1, 2).flatten(0, 1)
    local_slices = local.transpose(1, 2).flatten(0, 1)[valid0.reshape(-1)]
    slices = _fuse(sd, p + "conv_cat_decoder_1", slices, local_slices, "cat")
    aux1 = _conv(sd, p + "head_auxi_1", slices, 1).view(B, -1, *slices.shape[-2:])
    valid1 = reference_valid_idx(aux1, topk).reshape(-1)
    y = up_block(sd, p + "decoder1.", slices[valid1], dec[0])
    lp = p + "corr_local_decoder_projection."
    l2 = F.conv_transpose2d(local_slices[valid1], sd[lp + "0.weight"], sd[lp + "0.bias"], stride=2)
    l2 = F.relu(double_conv(sd, lp + "1.double_conv.", l2))
    y = _fuse(sd, p + "conv_cat_decoder_2", y, l2, "cat")
    aux2 = _conv(sd, p + "head_auxi_2", y, 1).view(B, -1, *y.shape[-2:])
    valid2 = reference_valid_idx(aux2, topk).reshape(-1)
    y = up_block(sd, p + "decoder2.", y[valid2], dec[1])
    logits = _conv(sd, p + "head", y, 1).view(B, -1, *y.shape[-2:])
    idx1, idx2 = valid0.clone(), valid1.clone()
    idx2[valid1] = valid2
    idx1[valid0] = idx2
    out = torch.zeros(B, Tc, *logits.shape[-2:])
    for i in range(B):
        out[i, idx1[i]] = logits[i].sigmoid()
    if classes is None:
        return out
    full = torch.full((B, T, *out.shape[-2:]), -100.0)
    return full.scatter(1, classes[..., None, None].expand(-1, -1, *out.shape[-2:]), out)


# ----------------------------------------------------------------------------- meta-architecture
def reference_views_output(sd, clip_images, text, *, family: str, fast: bool, resolution: int,
                           guidance_layers: Tuple[int, int], p2t_heads: int = 8, **head):
    """What ``sem_seg_head`` returns for CLIP-normalised ``clip_images (B, 3, H, W)`` and CLIP
    text ``(T, 1, C)``: resize, dense CLIP + guidance, P2Tformer (FGA-seg), head in eval mode."""
    img, res4, res5 = reference_image_features(sd, clip_images, resolution=resolution,
                                               guidance_layers=guidance_layers, normalize=False)
    if family == "fgaseg":
        text = reference_p2tformer(sd, img, text, heads=p2t_heads)
    else:
        text = text.unsqueeze(0).expand(img.shape[0], -1, -1, -1)
    if fast:
        return reference_fast_inference(sd, img, text, res4, res5, **head)
    head.pop("topk", None)
    return reference_head(sd, img, text, res4, res5, family=family, **head)[0]


def _official_normalise(raw):
    """Official: raw pixels ``(..., 3, H, W)`` in 0-255 minus ``clip_pixel_mean``, over ``clip_pixel_std``."""
    mean = torch.tensor(CLIP_MEAN).view(-1, 1, 1) * 255
    std = torch.tensor(CLIP_STD).view(-1, 1, 1) * 255
    return (raw - mean) / std


def reference_single_view(sd, image, text, *, out_size: Tuple[int, int], size_divisibility: int = 32, **kw):
    """``FGASeg.forward`` eval, no sliding window: ``image (3, H, W)`` in [0, 1] -> ``(T, *out_size)``.

    Normalise, zero-pad to a multiple of ``size_divisibility`` (``ImageList.from_tensors``), head,
    ``sigmoid``, ``sem_seg_postprocess`` (crop to the unpadded size, bilinear to ``out_size``).
    """
    clip = _official_normalise(image * 255)
    H, W = clip.shape[-2:]
    pad_h = (H + size_divisibility - 1) // size_divisibility * size_divisibility - H
    pad_w = (W + size_divisibility - 1) // size_divisibility * size_divisibility - W
    clip = F.pad(clip, [0, pad_w, 0, pad_h], value=0.0)[None]
    outputs = reference_views_output(sd, clip, text, **kw).sigmoid()
    result = outputs[0][:, :H, :W][None]
    return F.interpolate(result, size=out_size, mode="bilinear", align_corners=False)[0]


def reference_sliding_window(sd, image, text, *, out_size: Tuple[int, int], crop: int = 384,
                             overlap: float = 0.333, out_res: int = 640, view_batch: Optional[int] = None, **kw):
    """``FGASeg.inference_sliding_window`` (its ``kernel`` is ``crop`` here): ``image (3, H, W)`` in
    [0, 1] -> ``(T, *out_size)``. ``view_batch``: run the head on that many views at a time to
    save memory (same result for the plain heads, which treat views independently; the fast
    decoder couples them and ignores it)."""
    stride = int(crop * (1 - overlap))
    unfold = torch.nn.Unfold(kernel_size=crop, stride=stride)
    fold = torch.nn.Fold([out_res, out_res], kernel_size=crop, stride=stride)
    raw = image * 255
    big = F.interpolate(raw[None], size=[out_res, out_res], mode="bilinear", align_corners=False).squeeze()
    crops = unfold(big).T.reshape(-1, 3, crop, crop)  # "(C H W) L -> L C H W"
    global_image = F.interpolate(raw[None], size=(crop, crop), mode="bilinear", align_corners=False)
    views = torch.cat((crops, global_image), dim=0)
    clip = _official_normalise(views)
    step = clip.shape[0] if kw.get("fast") or not view_batch else view_batch
    outputs = torch.cat([reference_views_output(sd, clip[s:s + step], text, **dict(kw))
                         for s in range(0, clip.shape[0], step)], dim=0)
    outputs = F.interpolate(outputs, size=crop, mode="bilinear", align_corners=False).sigmoid()
    global_output = F.interpolate(outputs[-1:], size=[out_res, out_res], mode="bilinear", align_corners=False)
    outputs = outputs[:-1]
    outputs = fold(outputs.flatten(1).T) / fold(unfold(torch.ones([1, out_res, out_res])))
    outputs = (outputs + global_output) / 2.0
    return F.interpolate(outputs[0][None], size=out_size, mode="bilinear", align_corners=False)[0]
