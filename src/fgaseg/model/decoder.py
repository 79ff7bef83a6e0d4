"""The FGAseg head (official ``Decoder_fast`` / ``Decoder``; CAT-Seg's ``Aggregator``).

cost volumes (GCS + LCS) -> embeddings -> fusion -> [aux0] -> N x (Swin spatial + linear class
aggregation) -> local fusion 1 -> [aux1] -> Up-block 1 -> local fusion 2 -> [aux2] -> Up-block 2
-> 3x3 head. Brackets: auxiliary heads of the streamlined ("fast") decoder, which also drive the
TopK class pruning at inference. With ``use_lcs`` off and the plain decoder this is exactly
CAT-Seg's ``Aggregator`` (same parameter names and shapes).

All per-class work after the class aggregation is done in chunks of classes at inference, and
the class aggregation itself accumulates its sums over chunks, so memory stays bounded for any
number of classes; results do not depend on the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.model.class_aggregation import ClassTransformerLayer
from fgaseg.model.config import FGASegConfig
from fgaseg.model.cost_volume import Local_align, cosine_cost_volume, gather_classes, preselect_classes
from fgaseg.model.parallel_chunks import map_chunks
from fgaseg.model.swin_aggregation import SwinTransformerBlockWrapper
from fgaseg.model.topk import class_copies, first_positions, keep_indices, tie_copies
from fgaseg.model.upsampling import DoubleConv, Up


_DECODE_CACHE_BYTES = 512 * 2**20  # TopK stage 2 keeps Up-block-1 outputs up to this size


class AggregatorLayer(nn.Module):
    """One aggregation layer: spatial (Swin) then class (linear attention) aggregation."""

    def __init__(self, hidden_dim: int, text_guidance_dim: int, appearance_guidance: int, nheads: int,
                 input_resolution: Tuple[int, int], pooling_size: Tuple[int, int],
                 eval_pooling_size: Tuple[int, int], window_size: int, pad_len: int) -> None:
        super().__init__()
        self.swin_block = SwinTransformerBlockWrapper(hidden_dim, appearance_guidance, input_resolution,
                                                      nheads, window_size)
        self.attention = ClassTransformerLayer(hidden_dim, text_guidance_dim, nheads=nheads,
                                               pooling_size=pooling_size,
                                               eval_pooling_size=eval_pooling_size, pad_len=pad_len)

    def forward(self, x: torch.Tensor, appearance_guidance: Optional[torch.Tensor],
                text_guidance: Optional[torch.Tensor], chunk_size: Optional[int] = None) -> torch.Tensor:
        x = self.swin_block(x, appearance_guidance, chunk_size)
        return self.attention(x, text_guidance, chunk_size, overwrite_input=True)  # x is ours


@dataclass
class HeadOutput:
    """Training outputs at the head's resolution; aux maps are None for the plain decoder."""

    logits: torch.Tensor  # (B, T, 4h, 4w)
    aux: List[Optional[torch.Tensor]]  # (B, T, h, w), (B, T, h, w), (B, T, 2h, 2w)


def _embed(conv: nn.Conv2d, cost: torch.Tensor) -> torch.Tensor:
    """``(B, P, T, h, w)`` -> conv per class slice -> ``(B, C, T, h, w)``."""
    B, P, T, h, w = cost.shape
    y = conv(cost.transpose(1, 2).reshape(B * T, P, h, w))
    return y.reshape(B, T, -1, h, w).transpose(1, 2)


_CLASS_CHUNK = 16  # classes per pass of the cost embeddings and the 5-D fusions at inference


def _inference() -> bool:
    """No autograd and no graph capture: chunked loops writing into buffers are allowed."""
    return not (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


def _take(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x[:, :, keep]`` of ``x (B, C, T, h, w)``, in channels-innermost memory ``(B, K, h, w, C)``
    (the layout of the Swin tokens and of channels-last decoder slices)."""
    return x.permute(0, 2, 3, 4, 1)[:, keep].permute(0, 4, 1, 2, 3)


def _to_slices(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, h, w)`` -> ``(B*T, C, h, w)`` (image-major) in channels-last memory, which the
    CPU convolutions, GroupNorms and channel Linears of the decoder run faster on (same values)."""
    B, C, T, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(B * T, h, w, C).permute(0, 3, 1, 2)


def _slices_head(conv: nn.Conv2d, slices: torch.Tensor, B: int) -> torch.Tensor:
    """1-channel conv head on ``(B*T, C, h, w)`` -> ``(B, T, h, w)``."""
    y = conv(slices)
    return y.reshape(B, -1, *y.shape[-2:])


class FGASegDecoder(nn.Module):
    """Cost volumes + aggregation + upsampling decoder (``FGASeg.head``)."""

    def __init__(self, config: FGASegConfig, embed_dim: int) -> None:
        super().__init__()
        c = config
        hidden = c.hidden_dim
        self.config = c
        self.hidden_dim = hidden
        self.pad_len = c.pad_len
        self.use_lcs = c.use_lcs
        self.fusion = c.fusion
        self.fast = c.decoder_mode == "fast"
        self.pruned_logit = c.pruned_logit
        resolution = c.feature_resolution()
        d0, d1 = c.decoder_dims
        self.layers = nn.ModuleList([
            AggregatorLayer(hidden, c.text_guidance_proj_dim, c.appearance_guidance_proj_dim, c.num_heads,
                            resolution, c.pooling_size, c.eval_pooling_size, c.window_size, c.pad_len)
            for _ in range(c.num_layers)
        ])
        P = c.num_templates
        self.conv1 = nn.Conv2d(P, hidden, kernel_size=7, stride=1, padding=3)
        if self.use_lcs:
            self.conv2 = nn.Conv2d(P, hidden, kernel_size=7, stride=1, padding=3)
            if self.fusion == "cat":
                self.conv_cat = nn.Linear(hidden * 2, hidden)
                self.conv_cat_decoder_1 = nn.Linear(hidden * 2, hidden)
                self.conv_cat_decoder_2 = nn.Linear(d0 * 2, d0)
            self.corr_local_decoder_projection = nn.Sequential(
                nn.ConvTranspose2d(hidden, d0, kernel_size=2, stride=2),
                DoubleConv(d0, d0),
                nn.ReLU(),
            )
        self.guidance_projection = nn.Sequential(
            nn.Conv2d(embed_dim, c.appearance_guidance_proj_dim, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
        )
        self.text_guidance_projection = nn.Sequential(
            nn.Linear(embed_dim, c.text_guidance_proj_dim),
            nn.ReLU(),
        )
        self.decoder_guidance_projection = nn.ModuleList([
            nn.Sequential(nn.Conv2d(d, dp, kernel_size=3, stride=1, padding=1), nn.ReLU())
            for d, dp in zip(c.decoder_guidance_dims, c.decoder_guidance_proj_dims)
        ])
        self.decoder1 = Up(hidden, d0, c.decoder_guidance_proj_dims[0])
        self.decoder2 = Up(d0, d1, c.decoder_guidance_proj_dims[1])
        self.head = nn.Conv2d(d1, 1, kernel_size=3, stride=1, padding=1)
        if self.fast:
            self.head_auxi_0 = nn.Conv2d(hidden, 1, kernel_size=3, stride=1, padding=1)
            self.head_auxi_1 = nn.Conv2d(hidden, 1, kernel_size=3, stride=1, padding=1)
            self.head_auxi_2 = nn.Conv2d(d0, 1, kernel_size=3, stride=1, padding=1)
        if self.use_lcs:
            self.Local_align = Local_align(embed_dim, embed_dim, kernel_size=c.lcs_kernel_size)

    # ------------------------------------------------------------------ building blocks
    def _fuse(self, lin_name: str, x: torch.Tensor, local: Optional[torch.Tensor]) -> torch.Tensor:
        """Fuse the aggregation stream with the local (LCS) embedding along channels (dim 1).

        "cat": ``Linear([x, local])`` over channels without concatenating: two GEMMs over the
        positions in channels-last order (``(B*T, C, h, w)`` slices or ``(B, C, T, h, w)``),
        whose result has channels-innermost memory (what the Swin blocks and the channels-last
        decoder slices read without a copy). At inference 5-D inputs go
        ``_CLASS_CHUNK`` classes at a time into one buffer (small temporaries). "add":
        ``x + local``.
        """
        if local is None:
            return x
        if self.fusion == "add":
            return x + local
        lin = getattr(self, lin_name)
        c = x.shape[1]
        w1, w2 = lin.weight[:, :c], lin.weight[:, c:]
        perm, inv = ((0, 2, 3, 1), (0, 3, 1, 2)) if x.dim() == 4 else ((0, 2, 3, 4, 1), (0, 4, 1, 2, 3))
        xs, ls = x.permute(perm), local.permute(perm)  # channels last
        if not _inference():
            return (F.linear(xs, w1, lin.bias) + F.linear(ls, w2)).permute(inv)
        if x.dim() == 4:
            return F.linear(xs, w1, lin.bias).add_(F.linear(ls, w2)).permute(inv)
        T, out = xs.shape[1], None
        for s in range(0, T, _CLASS_CHUNK):
            y = F.linear(xs[:, s:s + _CLASS_CHUNK], w1, lin.bias).add_(F.linear(ls[:, s:s + _CLASS_CHUNK], w2))
            if out is None:
                out = y.new_empty(y.shape[0], T, *y.shape[2:])
            out[:, s:s + _CLASS_CHUNK] = y
        return out.permute(inv)

    def _embed_fuse(self, cost: torch.Tensor, lcs: Optional[torch.Tensor]
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Inference form of ``fuse(embed1(cost), embed2(lcs))``: ``_CLASS_CHUNK`` classes at a
        time into two ``(B, C, T, h, w)`` buffers with channels-innermost memory (the fused
        stream and the LCS embedding), instead of five full-size temporaries."""
        T = cost.shape[2]
        x = local = None
        for s in range(0, T, _CLASS_CHUNK):
            e = _embed(self.conv1, cost[:, :, s:s + _CLASS_CHUNK])
            el = None if lcs is None else _embed(self.conv2, lcs[:, :, s:s + _CLASS_CHUNK])
            y = self._fuse("conv_cat", e, el).permute(0, 2, 3, 4, 1)  # (B, n, h, w, C)
            if x is None:
                x = y.new_empty(y.shape[0], T, *y.shape[2:])
                local = None if el is None else y.new_empty(el.shape[0], T, *el.shape[3:], el.shape[1])
            x[:, s:s + _CLASS_CHUNK] = y
            if el is not None:
                local[:, s:s + _CLASS_CHUNK] = el.permute(0, 2, 3, 4, 1)
        return x.permute(0, 4, 1, 2, 3), None if local is None else local.permute(0, 4, 1, 2, 3)

    def _prepare(self, img_feats: torch.Tensor, gcs_text: torch.Tensor, text: torch.Tensor,
                 first: Optional[torch.Tensor] = None):
        """Cost volumes, pre-selection (``first``: class copies, see ``topk.tie_copies``),
        embeddings and guidance projections."""
        B = img_feats.shape[0]
        if gcs_text.dim() == 3:
            gcs_text = gcs_text.unsqueeze(0)
        if text.dim() == 3:
            text = text.unsqueeze(0)
        gcs_text = gcs_text.expand(B, -1, -1, -1)
        text = text.expand(B, -1, -1, -1)
        cost = cosine_cost_volume(img_feats, gcs_text)  # (B, P, T, h, w)
        selected = None
        if self.pad_len > 0 and cost.shape[2] > self.pad_len:
            selected = preselect_classes(cost, self.pad_len, first)
            cost = gather_classes(cost, selected, dim=2)
            text = gather_classes(text, selected, dim=1)
        lcs = self.Local_align(img_feats, text) if self.use_lcs else None
        if _inference():
            x, local = self._embed_fuse(cost, lcs)
        else:
            x = _embed(self.conv1, cost)
            local = None if lcs is None else _embed(self.conv2, lcs)
            x = self._fuse("conv_cat", x, local)
        app_guidance = self.guidance_projection(img_feats)
        text_guidance = self.text_guidance_projection(F.normalize(text.mean(dim=-2), dim=-1))
        return x, local, app_guidance, text_guidance, selected

    def decoder_shares(self, guidance: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Per-image guidance terms of the two Up-blocks (``Up.guidance_share`` of the projected
        CLIP guidance): computed once per image, broadcast over every class chunk."""
        return [up.guidance_share(proj(g)) for up, proj, g in
                zip((self.decoder1, self.decoder2), self.decoder_guidance_projection, guidance)]

    def _decode1(self, x: torch.Tensor, local: Optional[torch.Tensor], shares: Sequence[torch.Tensor]
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Classes ``x (B, C, t, h, w)`` (already fused after aggregation) -> Up-block 1 + local
        fusion 2: ``(B*t, d0, 2h, 2w)``, plus the aggregated slices for aux1. ``shares``: from
        :meth:`decoder_shares`."""
        slices = _to_slices(x)
        y = self.decoder1(slices, share=shares[0])
        if local is not None:
            y = self._fuse("conv_cat_decoder_2", y, self.corr_local_decoder_projection(_to_slices(local)))
        return y, slices

    def _decode2(self, y: torch.Tensor, shares: Sequence[torch.Tensor], B: int) -> torch.Tensor:
        return _slices_head(self.head, self.decoder2(y, share=shares[1]), B)

    def _scatter(self, values: torch.Tensor, selected: Optional[torch.Tensor], T: int) -> torch.Tensor:
        """Put the pre-selected classes' maps back among ``T`` classes (others: pruned logit)."""
        if selected is None:
            return values
        out = values.new_full((values.shape[0], T, *values.shape[2:]), self.pruned_logit)
        index = selected[:, :, None, None].expand(-1, -1, *values.shape[2:])
        return out.scatter(1, index, values)

    # ------------------------------------------------------------------ training / plain forward
    def forward(self, img_feats: torch.Tensor, gcs_text: torch.Tensor, text: torch.Tensor,
                guidance: Sequence[torch.Tensor]) -> HeadOutput:
        """Full pass over all classes (training; also usable at eval without TopK).

        Args:
            img_feats: ``(B, D, h, w)`` dense CLIP embedding.
            gcs_text: ``(T, P, D)`` or ``(B, T, P, D)`` text for the global cost volume.
            text: ``(T, P, D)`` or ``(B, T, P, D)`` (refined) text for LCS and text guidance.
            guidance: ``[(B, G0, 2h, 2w), (B, G1, 4h, 4w)]`` upsampled intermediate CLIP features.
        """
        B = img_feats.shape[0]
        T = gcs_text.shape[-3]
        x, local, app_g, text_g, selected = self._prepare(img_feats, gcs_text, text)
        dec_g = self.decoder_shares(guidance)
        aux: List[Optional[torch.Tensor]] = [None, None, None]
        if self.fast:
            aux[0] = _slices_head(self.head_auxi_0, _to_slices(x), B)
        for layer in self.layers:
            x = layer(x, app_g, text_g)
        x = self._fuse("conv_cat_decoder_1", x, local)
        y, slices = self._decode1(x, local, dec_g)
        if self.fast:
            aux[1] = _slices_head(self.head_auxi_1, slices, B)
            aux[2] = _slices_head(self.head_auxi_2, y, B)
        logits = self._decode2(y, dec_g, B)
        return HeadOutput(self._scatter(logits, selected, T),
                          [None if a is None else self._scatter(a, selected, T) for a in aux])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, img_feats: torch.Tensor, gcs_text: torch.Tensor, text: torch.Tensor,
              guidance: Sequence[torch.Tensor], topk: Optional[int] = None,
              chunk_size: Optional[int] = None, class_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``(B, T, 4h, 4w)`` in chunks of classes, with optional TopK pruning (fast mode).

        TopK keeps, at each of the three aux stages, the classes in some pixel's top-k over the
        whole batch (the views of one image); pruned classes get ``pruned_logit``. When the
        class pre-selection is active each image has its own class subset, so images are then
        pruned one at a time. ``class_ids (T,)``: first copy of every class (``topk.duplicate_ids``
        of the CLIP text; default: of ``gcs_text``): copies are ranked and scored as exact ties.
        """
        B = img_feats.shape[0]
        T = gcs_text.shape[-3]
        preselect = self.pad_len > 0 and T > self.pad_len
        # k >= the classes decoded per image keeps all of them at every stage: skip TopK so the
        # result is the unpruned one bit for bit (the pruned path's per-image split and its
        # stage-2 cache change batch shapes and memory layout, hence float rounding)
        use_topk = bool(topk) and self.fast and topk < (self.pad_len if preselect else T)
        if use_topk and B > 1 and preselect:
            outs = []
            for b in range(B):
                gt = gcs_text if gcs_text.dim() == 3 else gcs_text[b:b + 1]
                tt = text if text.dim() == 3 else text[b:b + 1]
                outs.append(self.infer(img_feats[b:b + 1], gt, tt, [g[b:b + 1] for g in guidance],
                                       topk, chunk_size, class_ids))
            return torch.cat(outs, dim=0)

        # copies of a class (same text) are tied exactly when ranked, as in the official code
        ids = class_ids if class_ids is not None else class_copies(
            gcs_text if gcs_text.dim() == 3 else gcs_text[0])  # (T,), None while exporting
        x, local, app_g, text_g, selected = self._prepare(img_feats, gcs_text, text, ids)
        if selected is not None and ids is not None:
            ids = ids[selected]  # (B, Tc): the class of every position, per image
        dec_g = self.decoder_shares(guidance)
        Tc = x.shape[2]
        step = chunk_size or Tc
        kept = torch.arange(Tc, device=x.device)  # classes (of the Tc) still alive

        def copies() -> Optional[torch.Tensor]:  # first copy of every alive position
            return None if ids is None else first_positions(ids[..., kept])

        if use_topk:  # stage 0: prune before aggregation
            aux0 = torch.cat([_slices_head(self.head_auxi_0, _to_slices(x[:, :, s:s + step]), B)
                              for s in range(0, Tc, step)], dim=1)
            keep = keep_indices(aux0, topk, copies())
            if keep.numel() < Tc:
                kept = keep
                x, text_g = _take(x, keep), text_g[:, keep]
                local = None if local is None else _take(local, keep)
        for layer in self.layers:
            x = layer(x, app_g, text_g, chunk_size)
        x = self._fuse("conv_cat_decoder_1", x, local)

        if use_topk:  # stage 1: prune after aggregation
            n = x.shape[2]
            aux1 = torch.cat([_slices_head(self.head_auxi_1, _to_slices(x[:, :, s:s + step]), B)
                              for s in range(0, n, step)], dim=1)
            keep = keep_indices(aux1, topk, copies())
            if keep.numel() < n:
                kept = kept[keep]
                x = _take(x, keep)
                local = None if local is None else _take(local, keep)

        n = x.shape[2]

        def local_of(s: int, e: int) -> Optional[torch.Tensor]:
            return None if local is None else local[:, :, s:e]

        def decode(s: int) -> torch.Tensor:  # classes s:s+step of x, both Up-blocks and the head
            return self._decode2(self._decode1(x[:, :, s:s + step], local_of(s, s + step), dec_g)[0], dec_g, B)

        if use_topk:  # stage 2: prune after Up-block 1
            # Up-block 1 outputs are kept (when they fit the budget) so the survivors are not
            # decoded twice; otherwise they are recomputed chunk by chunk.
            d0, h2, w2 = self.config.decoder_dims[0], x.shape[-2] * 2, x.shape[-1] * 2
            keep_cache = B * n * d0 * h2 * w2 * x.element_size() <= _DECODE_CACHE_BYTES
            aux2_parts, cache = [], None
            for s in range(0, n, step):
                y, _ = self._decode1(x[:, :, s:s + step], local_of(s, s + step), dec_g)
                aux2_parts.append(_slices_head(self.head_auxi_2, y, B))
                if keep_cache:  # (B, n, 2h, 2w, d0): channels-last slices without a transposition
                    y = y.permute(0, 2, 3, 1)
                    if cache is None:
                        cache = y.new_empty(B, n, *y.shape[1:])
                    cache[:, s:s + step] = y.reshape(B, -1, *y.shape[1:])
                del y
            keep = keep_indices(torch.cat(aux2_parts, dim=1), topk, copies())
            if keep.numel() < n:
                kept = kept[keep]
                x = _take(x, keep)
                local = None if local is None else _take(local, keep)
            if keep_cache:
                if keep.numel() < n:
                    cache = cache[:, keep]
                n = x.shape[2]
                logits = torch.cat(map_chunks(
                    lambda s: self._decode2(cache[:, s:s + step].flatten(0, 1).permute(0, 3, 1, 2), dec_g, B),
                    range(0, n, step), x.device), dim=1)
            else:
                n = x.shape[2]
                logits = torch.cat(map_chunks(decode, range(0, n, step), x.device), dim=1)
        else:
            logits = torch.cat(map_chunks(decode, range(0, n, step), x.device), dim=1)

        if ids is not None:
            logits = tie_copies(logits, copies())
        if kept.numel() < Tc:
            full = logits.new_full((B, Tc, *logits.shape[2:]), self.pruned_logit)
            full[:, kept] = logits
            logits = full
        return self._scatter(logits, selected, T)
