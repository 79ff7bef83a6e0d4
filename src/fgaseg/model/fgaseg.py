"""`FGASeg`: the full model (CLIP + P2Tformer + alignment head + cost-aggregation decoder).

Submodules: ``clip`` (fgaseg.clip.CLIP), ``p2tformer`` (official ``predictor.DCDT``, None when
off), ``alignment_head`` (official ``predictor.proj``, None when T2Ploss is off), ``head``
(official ``predictor.transformer``), ``upsample1`` / ``upsample2`` (transposed convs making the
decoder guidance from the intermediate CLIP layers). See docs/model.md.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.clip import CLIP, CLIP_MEAN, CLIP_STD, build_clip, encode_class_names, first_synonym
from fgaseg.errors import ClassNamesError, ConfigError, ImageError
from fgaseg.model.alignment_head import Projector
from fgaseg.model.config import FGASegConfig
from fgaseg.model.decoder import FGASegDecoder
from fgaseg.model.inference_options import InferenceOptions, autocast_context, compile_blocks
from fgaseg.model.losses import check_targets, segmentation_losses
from fgaseg.model.p2tformer import P2Tformer
from fgaseg.model.parameters import apply_clip_finetune, parameter_groups
from fgaseg.model.pretrained import load_into, resolve_source, save_pretrained
from fgaseg.model.sliding_window import (make_plan, make_views, merge_chunk, merge_views, probs_to_logits,
                                         sliding_window_probs)
from fgaseg.model.topk import class_copies
from fgaseg.predict.scores import ClassScores

_TEXT_CHUNK = 256  # class names encoded per CLIP text pass
_TEXT_CACHE_SIZE = 8
_P2T_CHUNK = 1024  # P2Tformer queries are cheap; chunking them would re-project the keys


@dataclass
class FGASegOutput:
    """``logits (B, T, H, W)`` at the target (or input) size; unweighted named losses; weighted total."""

    logits: torch.Tensor
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    loss: Optional[torch.Tensor] = None


class FGASeg(nn.Module):
    """FGAseg open-vocabulary segmenter (CAT-Seg when all four switches are off)."""

    def __init__(self, config: Optional[FGASegConfig] = None, clip: Optional[CLIP] = None) -> None:
        super().__init__()
        config = dataclasses.replace(config) if config is not None else FGASegConfig()
        if clip is None:
            clip = build_clip(config.clip_cfg())
        elif clip.config.to_dict() != config.clip_cfg().to_dict():
            config.clip_config = clip.config.to_dict()  # remember the backbone actually used
        cc = clip.config
        embed, width = cc.embed_dim, cc.vision_width
        if any(not 0 <= i < cc.vision_layers for i in config.guidance_layers):
            raise ConfigError(f"guidance_layers {config.guidance_layers} out of range for a "
                              f"{cc.vision_layers}-block CLIP")
        if config.use_p2tformer and embed % config.p2t_heads:
            raise ConfigError(f"CLIP embed_dim {embed} is not divisible by p2t_heads {config.p2t_heads}")
        self.config = config
        self.clip = clip
        apply_clip_finetune(self.clip, config.clip_finetune)
        self.p2tformer = (P2Tformer(embed, config.p2t_heads, config.p2t_layers, config.p2t_gamma_init)
                          if config.use_p2tformer else None)
        self.alignment_head = (Projector(embed, embed // 2, config.align_kernel_size)
                               if config.use_t2p_loss else None)
        self.head = FGASegDecoder(config, embed)
        self.upsample1 = nn.ConvTranspose2d(width, config.decoder_guidance_dims[0], kernel_size=2, stride=2)
        self.upsample2 = nn.ConvTranspose2d(width, config.decoder_guidance_dims[1], kernel_size=4, stride=4)
        self._register_constants()
        self._text_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self.inference_options = InferenceOptions()

    def _register_constants(self, device: Optional[torch.device] = None) -> None:
        """Non-persistent buffers (not in the state dict): CLIP pixel mean / std."""
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        self._text_cache.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _text_trainable(self) -> bool:
        return any(p.requires_grad for n, p in self.clip.named_parameters() if not n.startswith("visual."))

    @staticmethod
    def _check_names(class_names: Sequence[str]) -> List[str]:
        if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
            raise ClassNamesError("class names must be given as a list of strings")
        return list(class_names)

    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ImageError(f"images must be a float tensor (B, 3, H, W) with values in [0, 1], got {shape}")
        if not images.is_floating_point():
            raise ImageError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.shape[0] == 0 or images.shape[-1] < 1 or images.shape[-2] < 1:
            raise ImageError(f"images tensor is empty: {tuple(images.shape)}")
        return images

    # ------------------------------------------------------------------ text
    def encode_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """L2-normalised CLIP text embeddings ``(T, P, D)`` of the prompt-filled class names.

        Cached per class list whenever no gradient can flow into the text tower (eval, no-grad,
        or frozen text weights); with trainable text weights in training it is recomputed
        (the weights change every step) and the cache is dropped.
        """
        names = self._check_names(class_names)
        templates = self.config.prompt_templates
        use_cache = not (torch.is_grad_enabled() and self.training and self._text_trainable())
        key = (tuple(names), templates, str(self.device), self.clip.dtype)
        if use_cache and key in self._text_cache:
            self._text_cache.move_to_end(key)
            cached = self._text_cache[key]
            return cached.clone() if cached.is_inference() and not torch.is_inference_mode_enabled() else cached
        if not use_cache:
            self._text_cache.clear()
        # one pass per distinct prompt: copies of a class (e.g. ADE-847's repeated first
        # synonyms) get bit-identical embeddings, so that they tie exactly (model/topk.py)
        keys = [first_synonym(n) if isinstance(n, str) else n for n in names]
        index = {key: i for i, key in reversed(list(enumerate(keys)))}
        unique = [names[i] for i in sorted(set(index.values()))]
        with torch.no_grad() if use_cache else nullcontext():
            parts = [encode_class_names(self.clip, unique[s:s + _TEXT_CHUNK], templates)
                     for s in range(0, max(len(unique), 1), _TEXT_CHUNK)]
        text = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        if len(unique) < len(names):
            rank = {i: r for r, i in enumerate(sorted(set(index.values())))}
            text = text[torch.tensor([rank[index[k]] for k in keys], device=text.device)]
        if use_cache:
            self._text_cache[key] = text
            while len(self._text_cache) > _TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return text

    # ------------------------------------------------------------------ shared pieces
    def _clip_input(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        if tuple(x.shape[-2:]) != tuple(self.config.image_size):
            x = F.interpolate(x, size=self.config.image_size, mode="bilinear", align_corners=False)
        return x

    def image_features(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Dense CLIP embedding ``(B, D, h, w)`` and the decoder guidance
        ``[(B, G0, 2h, 2w), (B, G1, 4h, 4w)]`` of images in ``[0, 1]``."""
        dense = self.clip.encode_image_dense(self._clip_input(images), layers=self.config.guidance_layers)
        img = dense.token_map()
        return img, [self.upsample1(dense.layers[0]), self.upsample2(dense.layers[1])]

    def refine_text(self, img: torch.Tensor, text: torch.Tensor,
                    chunk_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(refined, gcs_text)``: text for LCS / guidance / T2P head, and for the global cost.

        refined = P2Tformer output ``(B, T, P, D)`` (or the CLIP text ``(T, P, D)`` when off);
        gcs_text = refined when ``use_gcs`` else the raw CLIP text (CAT-Seg's cost volume).
        """
        refined = self.p2tformer(img, text, chunk_size) if self.p2tformer is not None else text
        return refined, (refined if self.config.use_gcs else text)

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor, class_names: Sequence[str],
                targets: Optional[torch.Tensor] = None) -> FGASegOutput:
        """Logits ``(B, T, H, W)`` (at the targets' size, else the input size) and, with
        ``targets (B, H, W)`` (255 = ignore), the named losses and their weighted sum."""
        images = self._check_images(images)
        names = self._check_names(class_names)
        text = self.encode_classes(names)
        img, guidance = self.image_features(images)
        refined, gcs_text = self.refine_text(img, text)
        out = self.head(img, gcs_text, refined, guidance)
        size = tuple(targets.shape[-2:]) if targets is not None else tuple(images.shape[-2:])
        logits = F.interpolate(out.logits, size=size, mode="bilinear", align_corners=False)
        if targets is None:
            return FGASegOutput(logits)
        check_targets(targets, len(names))
        align = None
        if self.alignment_head is not None:
            r = refined if refined.dim() == 4 else refined.unsqueeze(0).expand(img.shape[0], -1, -1, -1)
            align = self.alignment_head(img, r.mean(dim=2))
        losses, total = segmentation_losses(logits, out.aux, align, targets.to(logits.device),
                                            self.config.aux_loss_weights, self.config.lambda_align)
        return FGASegOutput(logits, losses, total)

    # ------------------------------------------------------------------ inference
    def _resolve_topk(self, topk: Optional[int]) -> Optional[int]:
        k = self.config.topk if topk is None else topk
        if k is None or int(k) <= 0 or self.config.decoder_mode != "fast":
            return None
        return int(k)

    def _auto_chunk(self, batch: int, chunk_size: Optional[int]) -> int:
        chunk = chunk_size or self.config.chunk_size
        if chunk:
            return int(chunk)
        # (image, class) slices per chunk of the Swin blocks and the decoder (the class
        # aggregation chunks pixels, not classes); on CPU small chunks keep the per-class
        # tensors in cache (ViT-B/16: 4 slices ran ~1.2x faster than 16, 16 ~1.3x faster than 96)
        budget = 512 if self.device.type == "cuda" else 4
        return max(1, budget // max(batch, 1))

    def optimize_for_inference(self, *, bf16: bool = False, compile: bool = False) -> "FGASeg":
        """Opt into the inexact speed-ups of :meth:`segment_logits` (see docs/speed.md).

        ``bf16``: ``torch.autocast(bfloat16)`` over the image tower and the head (logits change
        by ~1e-2; much faster on CPUs with AMX / AVX512-BF16). ``compile``: ``torch.compile`` the
        CLIP image blocks (needs a C++ compiler on CPU; the first call compiles, which takes
        tens of seconds; a few % faster here). Returns ``self``.
        """
        self.inference_options = InferenceOptions(bf16=bool(bf16), compile=bool(compile))
        if compile:
            compile_blocks(self)
        return self

    def _infer_low(self, images: torch.Tensor, text: torch.Tensor, topk: Optional[int],
                   chunk_size: Optional[int]) -> torch.Tensor:
        """Head logits ``(B, T, 4h, 4w)`` of a batch of images / views."""
        chunk = self._auto_chunk(images.shape[0], chunk_size)
        with autocast_context(self.inference_options, self.device):
            img, guidance = self.image_features(images)
            refined, gcs_text = self.refine_text(img, text, max(chunk, _P2T_CHUNK))
            low = self.head.infer(img, gcs_text, refined, guidance, topk=topk, chunk_size=chunk,
                                  class_ids=class_copies(text))
        return low.float()

    def sliding_plan(self):
        c = self.config
        window = c.sliding_window_size or c.image_size[0]
        return make_plan(window, c.sliding_overlap, c.sliding_resize)

    def segment_logits(self, images: torch.Tensor, class_names: Sequence[str], *, sliding: bool = False,
                       topk: Optional[int] = None, chunk_size: Optional[int] = None,
                       protocol: str = "default",
                       output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Per-pixel class scores ``(B, T, H, W)`` at the input size (eval mode, no grad).

        Scores are logits: ``sigmoid(score)`` is the class probability. ``topk=None`` uses
        ``config.topk`` (official: 16 with the fast decoder); ``topk=0`` disables pruning;
        pruned classes score ``config.pruned_logit``. ``sliding`` runs the paper's protocol
        (crops + global view, probabilities averaged; scores are their logits). Classes are
        processed ``chunk_size`` at a time (automatic when None); results do not depend on it.
        ``protocol="official"`` reproduces the official code's final probabilities, quirks
        included (see docs/checkpoints.md and :mod:`fgaseg.model.official_protocol`);
        ``output_size (H', W')`` returns the scores at that size instead of the input size
        (official: probabilities are resized, default: logits).
        """
        from fgaseg.model.official_protocol import check_protocol, official_probabilities, probs_to_logits_

        images = self._check_images(images)
        names = self._check_names(class_names)
        if check_protocol(protocol) == "official":
            was_training = self.training
            self.eval()
            try:
                with torch.inference_mode():
                    images = images.to(self.device, self.pixel_mean.dtype)
                    text = self.encode_classes(names)
                    probs = official_probabilities(self, images, text, sliding=sliding,
                                                   topk=self._resolve_topk(topk), chunk_size=chunk_size,
                                                   output_size=output_size)
                    return probs_to_logits_(probs)
            finally:
                self.train(was_training)
        if output_size is not None and tuple(output_size) != tuple(images.shape[-2:]):
            scores = self.segment_logits(images, names, sliding=sliding, topk=topk, chunk_size=chunk_size)
            with torch.inference_mode():
                return torch.cat([F.interpolate(scores[:, s:s + 64], size=tuple(output_size), mode="bilinear",
                                                align_corners=False) for s in range(0, scores.shape[1], 64)], dim=1)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                images = images.to(self.device, self.pixel_mean.dtype)
                text = self.encode_classes(names)
                k = self._resolve_topk(topk)
                if sliding:
                    plan = self.sliding_plan()
                    outs = [sliding_window_probs(image, plan, lambda views: self._infer_low(views, text, k, chunk_size),
                                                 merge_chunk(plan), logits=True) for image in images]
                    return outs[0][None] if len(outs) == 1 else torch.stack(outs, dim=0)
                low = self._infer_low(images, text, k, chunk_size)
                return self._upsample_scores(low, tuple(images.shape[-2:]))
        finally:
            self.train(was_training)

    def segment_scores(self, images: torch.Tensor, class_names: Sequence[str], *,
                       sliding: bool = False, topk: Optional[int] = None,
                       chunk_size: Optional[int] = None,
                       protocol: str = "default") -> List[ClassScores]:
        """:meth:`segment_logits` per image as compact `fgaseg.predict.scores.ClassScores`.

        Classes pruned everywhere (pre-selection / TopK) share one stored map, so memory grows
        with the surviving classes, not with T. ``scores[b].to_dense()`` equals
        ``segment_logits(..., protocol=protocol)[b]`` bit for bit.

        ``protocol="official"``: the official scores are computed densely (as
        :meth:`segment_logits` does), then the largest group of bit-identical maps (e.g. the
        classes TopK pruned in every view) is stored once (``ClassScores.from_dense_shared``);
        only the storage is compact there, not the computation.
        """
        from fgaseg.model.official_protocol import check_protocol

        images = self._check_images(images)
        names = self._check_names(class_names)
        if check_protocol(protocol) == "official":
            logits = self.segment_logits(images, names, sliding=sliding, topk=topk,
                                         chunk_size=chunk_size, protocol=protocol)
            return [ClassScores.from_dense_shared(image) for image in logits]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                images = images.to(self.device, self.pixel_mean.dtype)
                text = self.encode_classes(names)
                k = self._resolve_topk(topk)
                size = tuple(images.shape[-2:])
                if sliding:
                    return [self._sliding_scores(image, text, k, chunk_size) for image in images]
                return self._upsampled_class_scores(self._infer_low(images, text, k, chunk_size),
                                                    size)
        finally:
            self.train(was_training)

    def _upsampled_class_scores(self, low: torch.Tensor, size: Tuple[int, int]) -> List[ClassScores]:
        """:meth:`_upsample_scores` of ``low (B, T, h, w)`` as ClassScores per image.

        The same classes are interpolated in the same groups (:func:`_runs`; bilinear results
        depend on how channels are grouped, by float rounding), so the maps are bit-identical.
        """
        B, T = low.shape[:2]
        step = max(1, (2 ** 26) // max(1, B * size[0] * size[1]))
        pruned = (low == self.config.pruned_logit).flatten(2).all(dim=-1).all(dim=0)  # (T,)
        index, shared = _stored_classes(pruned)
        values = [low.new_empty(index.numel(), *size) for _ in range(B)]
        filled = pruned.to(index.device)[index]  # the stored pruned class, if any
        for v in values:
            v[filled] = self.config.pruned_logit
        where = torch.searchsorted(index, torch.arange(T, device=index.device))  # class -> row
        for s, e in _runs((~pruned).nonzero().flatten().tolist(), step):
            maps = F.interpolate(low[:, s:e], size=size, mode="bilinear", align_corners=False)
            for b, v in enumerate(values):
                v[where[s:e]] = maps[b]  # live classes are stored, in order: a run of rows
        return [ClassScores(v, index.cpu(), T, shared) for v in values]

    def _sliding_scores(self, image: torch.Tensor, text: torch.Tensor, k: Optional[int],
                        chunk_size: Optional[int]) -> ClassScores:
        """The sliding-window protocol of one image ``(3, H, W)``, merging surviving classes only."""
        plan = self.sliding_plan()
        views = self._infer_low(make_views(image, plan), text, k, chunk_size)
        T = views.shape[1]
        pruned = (views == self.config.pruned_logit).flatten(2).all(dim=-1).all(dim=0)
        index, shared = _stored_classes(pruned)
        size = tuple(image.shape[-2:])
        values = views.new_empty(index.numel(), *size)
        # merged in the same class chunks as segment_logits (results depend on the grouping by
        # float rounding); chunks without a stored class are skipped
        step = merge_chunk(plan)
        where = torch.searchsorted(index, torch.arange(T, device=index.device))
        wanted = torch.zeros(T, dtype=torch.bool, device=index.device)
        wanted[index] = True
        for s in range(0, T, step):
            need = wanted[s:s + step].nonzero().flatten()
            if need.numel():
                merged = probs_to_logits(merge_views(views[:, s:s + step], plan, size))
                values[where[s + need]] = merged[need]
        return ClassScores(values, index.cpu(), T, shared)

    def _upsample_scores(self, low: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Bilinear resize of ``low (B, T, h, w)`` to ``size``.

        Classes pruned everywhere (pre-selection / TopK: constant ``pruned_logit``) are filled
        instead of interpolated; with many classes and TopK they are most of the output. Every
        plane of the (large, freshly allocated) result is written once: the live classes are
        interpolated run of consecutive classes by run (:func:`_runs`), for one image straight
        into the result (the kernel ``F.interpolate`` calls, without a temporary and a copy).
        """
        B, T = low.shape[:2]
        H, W = size
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            # export/compile cannot branch on data; bilinear keeps pruned constants constant
            return F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
        step = max(1, (2 ** 26) // max(1, B * H * W))
        pruned = (low == self.config.pruned_logit).flatten(2).all(dim=-1).all(dim=0)  # (T,)
        out = low.new_empty(B, T, H, W)
        if B == 1:  # out[:, s:e] is contiguous: interpolate into it, no temporary, no copy
            if bool(pruned.any()):
                out.index_fill_(1, pruned.nonzero().flatten(), self.config.pruned_logit)
            for s, e in _runs((~pruned).nonzero().flatten().tolist(), step):
                torch._C._nn.upsample_bilinear2d(low[:, s:e], (H, W), False, None, None, out=out[:, s:e])
            return out
        # the bilinear kernel's rounding depends on how channels are grouped: the same runs as
        # `_upsampled_class_scores`, so that its maps are bit-identical to these
        if bool(pruned.any()):
            out.index_fill_(1, pruned.nonzero().flatten(), self.config.pruned_logit)
        for s, e in _runs((~pruned).nonzero().flatten().tolist(), step):
            out[:, s:e] = F.interpolate(low[:, s:e], size=(H, W), mode="bilinear", align_corners=False)
        return out

    def predict(self, images: Any, classes: Any, **kw: Any) -> Any:
        """Segment image(s) into ``classes``; see :func:`fgaseg.predict.api.predict`."""
        from fgaseg.predict.api import predict

        return predict(self, images, classes, **kw)

    # ------------------------------------------------------------------ training helpers / io
    def parameter_groups(self, lr: float, clip_lr_multiplier: float = 0.01,
                         weight_decay: float = 1e-4) -> List[Dict[str, Any]]:
        """Optimizer groups: CLIP at ``lr * clip_lr_multiplier``; no decay on norm layers."""
        return parameter_groups(self, lr, clip_lr_multiplier, weight_decay)

    def trainable_parameter_names(self) -> List[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (CLIP included)."""
        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, source: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> "FGASeg":
        """Load our folder, an official CAT-Seg / FGA-seg checkpoint, or a hub id (``owner/name``)."""
        config, state = resolve_source(source)
        with torch.device("meta"):  # no random init of weights that are overwritten anyway
            model = cls(config)
        load_into(model, state, assign=True)
        model._register_constants(torch.device("cpu"))
        return model.to(map_location)


def _runs(indices: List[int], longest: int) -> List[Tuple[int, int]]:
    """Ascending ``indices`` as ``[(start, stop), ...]`` runs of consecutive values, each at most
    ``longest`` long."""
    runs: List[Tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i and i - runs[-1][0] < longest:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _stored_classes(pruned: torch.Tensor) -> Tuple[torch.Tensor, Optional[int]]:
    """Classes to store for a ``pruned (T,)`` mask: the unpruned ones plus the first pruned one,
    whose map the others share; and that one's position (None when all T are stored)."""
    stored = ~pruned
    first = None
    if bool(pruned.any()):
        first = int(pruned.nonzero()[0])
        stored[first] = True
    index = stored.nonzero().flatten()
    if first is None or index.numel() == pruned.numel():
        return index, None
    return index, int((index == first).nonzero()[0])
