"""The ``official`` protocol: final scores exactly as the official CAT-Seg / FGA-seg code makes them.

Rules read in ``FGA_seg/FGA_seg_model.py`` (``FGASeg.forward`` / ``inference_sliding_window``;
CAT-Seg's ``CATSeg`` is the same), ``Decoder_fast.forward`` / ``conv_decoder_inference`` /
``get_valid_idx_from_mask`` and detectron2's ``ImageList.from_tensors`` / ``sem_seg_postprocess``;
see docs/checkpoints.md for each difference to the default protocol and why it exists.

- Single view: the CLIP-normalised image is zero-padded (bottom / right) to a multiple of 32,
  resized to the CLIP resolution, the head output goes through ``sigmoid`` at the head's
  resolution, is cropped to the unpadded image size (a no-op unless a side is below the head's
  resolution) and the *probabilities* are resized bilinearly to the output size.
- Sliding window: views as in the default protocol; the head output of every view is resized
  to the window, squashed with ``sigmoid``, the crops are averaged, the global view is resized
  and averaged in, and the probabilities are resized to the output size.
- Fast decoder: the head returns ``sigmoid(logit)`` for the classes kept by TopK, 0 for pruned
  ones and -100 for classes dropped by the 256-class pre-selection; the steps above apply a
  second ``sigmoid``. With more than ``pad_len`` classes every view pre-selects its own classes
  (unsorted ``topk`` order) and the TopK union is taken over the views *by position*, so one
  kept position keeps a different class in each view.
- Evaluation input: detectron2's test resize (PIL bilinear on 8-bit pixels), see
  :func:`detectron2_resize`.

Ranking (TopK, pre-selection) uses the official calls in both protocols, see
:mod:`fgaseg.model.topk`.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fgaseg.clip import CLIP_MEAN
from fgaseg.errors import ConfigError
from fgaseg.model.cost_volume import cosine_cost_volume, gather_classes, preselect_classes
from fgaseg.model.decoder import _embed, _slices_head, _to_slices
from fgaseg.model.inference_options import autocast_context
from fgaseg.model.sliding_window import make_views, merge_views
from fgaseg.model.topk import duplicate_ids, first_positions, tie_copies, topk_class_mask

if TYPE_CHECKING:  # pragma: no cover
    from fgaseg.model.decoder import FGASegDecoder
    from fgaseg.model.fgaseg import FGASeg

PROTOCOLS = ("default", "official")
SIZE_DIVISIBILITY = 32  # official cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY
_MERGE_BUDGET = 2 ** 26  # floats per class chunk while merging / resizing probabilities


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is known, else a one-line ConfigError."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol


def protocol_kwargs(segmenter: Any, protocol: str) -> Dict[str, str]:
    """``segment_logits`` keywords for ``protocol``: none for the default (any segmenter works),
    a one-line ConfigError when ``segmenter`` has no protocols (e.g. the training-free ones)."""
    if check_protocol(protocol) == "default":
        return {}
    if "protocol" not in inspect.signature(segmenter.segment_logits).parameters:
        raise ConfigError(f"protocol {protocol!r} is only available for FGASeg models")
    return {"protocol": protocol}


def _valid_mask(aux: torch.Tensor, k: Optional[int], ids: torch.Tensor) -> torch.Tensor:
    """Official ``get_valid_idx_from_mask``: bool ``(T,)`` of the positions in some pixel's top-k
    of ``aux (B, T, H, W)`` (the official argsort, see :mod:`fgaseg.model.topk`); None keeps all.
    ``ids (B, T)``: the class at every position, so that copies of a class tie exactly."""
    return topk_class_mask(aux, aux.shape[1] if k is None else k, first_positions(ids))


def _heads(conv: torch.nn.Conv2d, x: torch.Tensor, step: int) -> torch.Tensor:
    """Aux head on every class slice of ``x (B, C, T, h, w)`` -> ``(B, T, h, w)``, in chunks."""
    B = x.shape[0]
    return torch.cat([_slices_head(conv, _to_slices(x[:, :, s:s + step]), B)
                      for s in range(0, x.shape[2], step)], dim=1)


@torch.no_grad()
def official_fast_decoder(head: "FGASegDecoder", img: torch.Tensor, gcs_text: torch.Tensor,
                          text: torch.Tensor, guidance: Sequence[torch.Tensor], topk: Optional[int],
                          chunk_size: Optional[int] = None,
                          class_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Official ``Decoder_fast`` inference output ``(B, T, 4h, 4w)`` for the views ``img (B, D, h, w)``.

    Values: ``sigmoid(logit)`` of kept classes, 0 for TopK-pruned ones, -100 for classes not
    pre-selected. ``topk=None`` keeps every class. Text as in :meth:`FGASegDecoder.infer`.
    """
    B = img.shape[0]
    if gcs_text.dim() == 3:
        gcs_text = gcs_text.unsqueeze(0)
    if text.dim() == 3:
        text = text.unsqueeze(0)
    gcs_text = gcs_text.expand(B, -1, -1, -1)
    text = text.expand(B, -1, -1, -1)
    T = gcs_text.shape[1]
    cost = cosine_cost_volume(img, gcs_text)
    # copies of a class (same prompt) tie exactly, see topk.py
    ids = class_ids if class_ids is not None else duplicate_ids(gcs_text[0])
    classes = None
    if head.pad_len > 0 and T > head.pad_len:
        # per view, in the unsorted order of the official topk call: positions, not classes,
        # are what the TopK union below shares between views
        classes = preselect_classes(cost, head.pad_len, ids)  # (B, pad_len)
        cost = gather_classes(cost, classes, dim=2)
        text = gather_classes(text, classes, dim=1)
        ids = ids[classes]
    else:
        ids = ids.expand(B, -1)  # (B, Tc): the class at every position of every view
    x = _embed(head.conv1, cost)
    local = _embed(head.conv2, head.Local_align(img, text)) if head.use_lcs else None
    x = head._fuse("conv_cat", x, local)
    app_g = head.guidance_projection(img)
    text_g = head.text_guidance_projection(F.normalize(text.mean(dim=-2), dim=-1))
    dec_g = head.decoder_shares(guidance)
    Tc = x.shape[2]
    step = chunk_size or Tc

    def keep(t: Optional[torch.Tensor], mask: torch.Tensor) -> Optional[torch.Tensor]:
        return None if t is None else t[:, :, mask]

    valid0 = _valid_mask(_heads(head.head_auxi_0, x, step), topk, ids)  # shared by the views
    x, local, text_g, ids = keep(x, valid0), keep(local, valid0), text_g[:, valid0], ids[:, valid0]
    for layer in head.layers:
        x = layer(x, app_g, text_g, chunk_size)
    x = head._fuse("conv_cat_decoder_1", x, local)
    valid1 = _valid_mask(_heads(head.head_auxi_1, x, step), topk, ids)
    x, local, ids = keep(x, valid1), keep(local, valid1), ids[:, valid1]
    decoded: List[torch.Tensor] = []
    aux2: List[torch.Tensor] = []
    for s in range(0, x.shape[2], step):
        y, _ = head._decode1(x[:, :, s:s + step], None if local is None else local[:, :, s:s + step], dec_g)
        aux2.append(_slices_head(head.head_auxi_2, y, B))
        decoded.append(y.reshape(B, -1, *y.shape[1:]))
    valid2 = _valid_mask(torch.cat(aux2, dim=1), topk, ids)
    ids = ids[:, valid2]
    # survivors of each chunk only: no full-size concatenation of the Up-block-1 outputs
    starts = range(0, x.shape[2], step)
    y = torch.cat([part[:, valid2[s:s + step]] for s, part in zip(starts, decoded)], dim=1)  # (B, n, d0, 2h, 2w)
    del decoded
    logits = torch.cat([head._decode2(y[:, s:s + step].flatten(0, 1).contiguous(memory_format=torch.channels_last),
                                      dec_g, B) for s in range(0, y.shape[1], step)], dim=1)
    kept = torch.arange(Tc, device=x.device)[valid0][valid1][valid2]
    out = logits.new_zeros(B, Tc, *logits.shape[-2:])
    out[:, kept] = tie_copies(logits, first_positions(ids)).sigmoid()
    if classes is None:
        return out
    full = out.new_full((B, T, *out.shape[-2:]), -100.0)
    return full.scatter(1, classes[:, :, None, None].expand(-1, -1, *out.shape[-2:]), out)


def official_head_scores(model: "FGASeg", views: torch.Tensor, text: torch.Tensor,
                         topk: Optional[int], chunk_size: Optional[int]) -> torch.Tensor:
    """Official head output ``(B, T, 4h, 4w)`` of a batch of views ``(B, 3, H, W)`` in [0, 1]:
    logits (pre-selection: -100) for the plain decoders, :func:`official_fast_decoder` for fast."""
    from fgaseg.model.fgaseg import _P2T_CHUNK

    chunk = model._auto_chunk(views.shape[0], chunk_size)
    with autocast_context(model.inference_options, model.device):  # as FGASeg._infer_low
        img, guidance = model.image_features(views)
        refined, gcs_text = model.refine_text(img, text, max(chunk, _P2T_CHUNK))
        if model.head.fast:
            out = official_fast_decoder(model.head, img, gcs_text, refined, guidance, topk, chunk,
                                        duplicate_ids(text))
        else:
            out = model.head.infer(img, gcs_text, refined, guidance, topk=None, chunk_size=chunk,
                                   class_ids=duplicate_ids(text))
    return out.float()


def _resize_probs(probs: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """detectron2 ``sem_seg_postprocess`` resize of ``probs (T, h, w)``, in class chunks."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    step = max(1, _MERGE_BUDGET // max(1, size[0] * size[1]))
    out = probs.new_empty(probs.shape[0], *size)
    for s in range(0, probs.shape[0], step):
        out[s:s + step] = F.interpolate(probs[None, s:s + step], size=size, mode="bilinear",
                                        align_corners=False)[0]
    return out


def official_single_view(model: "FGASeg", image: torch.Tensor, text: torch.Tensor, topk: Optional[int],
                         chunk_size: Optional[int], out_size: Tuple[int, int]) -> torch.Tensor:
    """Probabilities ``(T, *out_size)`` of ``image (3, H, W)`` (official non-sliding path)."""
    H, W = image.shape[-2:]
    pad_h, pad_w = -H % SIZE_DIVISIBILITY, -W % SIZE_DIVISIBILITY
    if pad_h or pad_w:
        # official: zero padding after CLIP normalisation = the CLIP mean colour before it
        mean = torch.tensor(CLIP_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
        padded = mean.expand(3, H + pad_h, W + pad_w).clone()
        padded[:, :H, :W] = image
        image = padded
    probs = official_head_scores(model, image[None], text, topk, chunk_size)[0].sigmoid()
    return _resize_probs(probs[:, :H, :W], out_size)


def official_sliding(model: "FGASeg", image: torch.Tensor, text: torch.Tensor, topk: Optional[int],
                     chunk_size: Optional[int], out_size: Tuple[int, int]) -> torch.Tensor:
    """Probabilities ``(T, *out_size)`` of ``image (3, H, W)`` (official sliding window)."""
    plan = model.sliding_plan()
    scores = official_head_scores(model, make_views(image, plan), text, topk, chunk_size)
    # merge_views: resize to the window, sigmoid, average crops + global view, resize (official)
    step = max(1, _MERGE_BUDGET // (plan.num_views * max(plan.resize, *out_size) ** 2))
    parts = [merge_views(scores[:, s:s + step], plan, out_size) for s in range(0, scores.shape[1], step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def detectron2_resize(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``image (3, H, W)`` in [0, 1] (from 8-bit pixels) resized to ``size`` as detectron2's test
    ``ResizeShortestEdge`` does it: PIL bilinear on the uint8 image (torch's antialiased resize
    differs by up to one grey level)."""
    import numpy as np
    from PIL import Image

    pixels = (image.detach().cpu() * 255).round_().clamp_(0, 255).to(torch.uint8)
    resized = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((size[1], size[0]), Image.BILINEAR)
    out = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
    return out.to(image.device, torch.float32).div_(255.0)


def probs_to_logits_(probs: torch.Tensor) -> torch.Tensor:
    """In-place inverse sigmoid of ``probs``, clamped so that it stays finite (no extra copies of
    the possibly large ``(B, T, H, W)`` map)."""
    finfo = torch.finfo(probs.dtype)
    return probs.clamp_(min=finfo.tiny, max=1.0 - finfo.eps / 2).logit_()


def official_probabilities(model: "FGASeg", images: torch.Tensor, text: torch.Tensor, *, sliding: bool,
                           topk: Optional[int], chunk_size: Optional[int],
                           output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Official final probabilities ``(B, T, H', W')`` of ``images (B, 3, H, W)`` in [0, 1].

    One image at a time, as the official code (it reads ``batched_inputs[0]``). ``output_size``
    is detectron2's ``(height, width)`` (default: the input size). ``topk`` is the fast
    decoder's K (official: 16; None keeps every class).
    """
    size = tuple(output_size) if output_size is not None else tuple(images.shape[-2:])
    run = official_sliding if sliding else official_single_view
    return torch.stack([run(model, image, text, topk, chunk_size, size) for image in images], dim=0)
