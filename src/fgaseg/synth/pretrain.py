"""Stage 1: contrastive pretraining of a tiny CLIP on the synthetic world, with a weight cache.

Half of each batch pairs a single centred object with its prompted phrase
(``"A photo of a red striped circle in the scene"``), half pairs a multi-object scene with its
caption. The single-object half binds attributes to objects; captions alone bind them badly.
CLIP sees all 72 compositions here (as web-scale CLIP would); only segmentation training
withholds the unseen ones. Identical texts in a batch get shared (soft) targets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from fgaseg.clip import CLIP, CLIPConfig, PROMPT_TEMPLATES_SINGLE, build_clip, tokenize
from fgaseg.clip.preprocess import normalize
from fgaseg.errors import ConfigError
from fgaseg.synth.vocabulary import Vocabulary, build_vocabulary
from fgaseg.synth.render import IGNORE
from fgaseg.synth.world import WorldConfig, generate_scenes

CACHE_FORMAT = 1


def tiny_clip_config(image_size: int = 64, width: int = 128, depth: int = 4) -> CLIPConfig:
    """ViT patch 8, ``width``/``depth`` image tower, 2-layer text tower, context 32 tokens."""
    return CLIPConfig(
        embed_dim=width, image_resolution=image_size, vision_layers=depth, vision_width=width,
        vision_patch_size=8, vision_heads=max(1, width // 32), context_length=32,
        vocab_size=49408, transformer_width=width, transformer_heads=max(1, width // 32),
        transformer_layers=2,
    )


@dataclass
class PretrainConfig:
    """Budget and optimiser of the contrastive stage."""

    # 1100 steps of 64 (~0.34 s a step on 2 cores) keep a fresh demo under 10 min; they teach
    # shape better than 600 of 128 at about the same cost (docs/synthetic.md, "Fourth session")
    steps: int = 1100
    batch_size: int = 64
    num_images: int = 12000  # half single objects, half scenes
    lr: float = 1e-3  # at 2e-3 the image tower learns no shape at all (docs/synthetic.md)
    weight_decay: float = 0.1
    # weight of a second term on the single-object half: each image against the prompts of
    # ALL phrases (not only those in the batch), so every step sees the hard negatives that
    # differ in one attribute only
    vocab_loss: float = 0.0
    # "cls": OpenAI CLIP's image embedding (CLS token); "dense_mean": the mean of the dense
    # tokens FGAseg's cost volume is built from (CAT-Seg's dense last block), so those tokens
    # are what the contrastive loss aligns with text
    pooling: str = "cls"
    # weight of a region-text term (boxes, not masks): the dense tokens inside each object's
    # bounding box are averaged and classified among all phrase prompts, so the tokens
    # FGAseg's cost volume is built from carry the object's phrase (docs/synthetic.md)
    region_loss: float = 1.0
    # how the region-text term reads a box: "mean" classifies the box's mean token; "token"
    # classifies every token of the box, weighted by how much that token already believes it
    # shows the box's colour and pattern (detached; the easy attributes pick the object's
    # tokens inside the box, no mask needed), so each token, not only their mean, must carry
    # the shape; "both" adds the two
    region_pooling: str = "mean"
    # share of single objects whose text names fewer attributes ("a striped circle", "a
    # circle"; the shape is always named), as web captions often do: texts that differ in
    # shape only give the contrastive loss pure shape negatives
    partial_captions: float = 0.0
    # share of each batch drawn from multi-object scenes (the rest: single objects)
    scene_share: float = 0.5
    clip: CLIPConfig = field(default_factory=tiny_clip_config)

    def __post_init__(self) -> None:
        if self.region_pooling not in ("mean", "token", "both"):
            raise ConfigError(f"region_pooling must be 'mean', 'token' or 'both', got {self.region_pooling!r}")
        if not 0.0 <= self.scene_share <= 1.0:
            raise ConfigError(f"scene_share must be in [0, 1], got {self.scene_share}")

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    """``$FGASEG_CACHE_DIR`` or ``~/.cache/fgaseg/synth``."""
    root = os.environ.get("FGASEG_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "fgaseg" / "synth"


def cache_key(config: PretrainConfig, world: WorldConfig, seed: int) -> str:
    blob = json.dumps(
        {"format": CACHE_FORMAT, "pretrain": config.to_dict(), "world": world.to_dict(), "seed": seed},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clip_cache_path(config: PretrainConfig, world: WorldConfig, seed: int) -> Path:
    """Where the tiny CLIP for this config and seed is (or will be) cached."""
    return cache_dir() / f"tiny-clip-{cache_key(config, world, seed)}.safetensors"


def prompt(phrase: str) -> str:
    return PROMPT_TEMPLATES_SINGLE[0].format(phrase)


def build_pretraining_data(
    world: WorldConfig, vocab: Vocabulary, num_images: int, seed: int, progress: bool = True,
    partial_captions: float = 0.0,
) -> Tuple[np.ndarray, List[str], np.ndarray]:
    """``images (N, H, W, 3) uint8``, their texts (first singles with prompts, then scenes) and
    ``labels (N, H, W) uint8`` (used only for the objects' bounding boxes)."""
    singles_count = num_images // 2
    desc = "world: CLIP images" if progress else None
    singles = generate_scenes(
        world, singles_count, seed, "clip-singles", vocab=vocab, num_objects=1, centred=True,
        progress=desc,
    )
    scenes = generate_scenes(world, num_images - singles_count, seed, "clip-scenes", vocab=vocab, progress=desc)
    # a single object's text is its phrase in the segmentation prompt template
    single_texts = [prompt(c[2:]) for c in singles.captions]  # captions are "a <phrase>"
    if partial_captions > 0:
        rng = np.random.default_rng([seed, 7])
        for i, caption in enumerate(singles.captions):
            if rng.random() < partial_captions:
                colour, pattern, shape = caption[2:].split(" ")
                kept = [w for w in (colour, pattern) if rng.random() < 0.5]
                single_texts[i] = prompt(" ".join(kept + [shape]))
    return (
        np.concatenate([singles.images, scenes.images]), single_texts + scenes.captions,
        np.concatenate([singles.labels, scenes.labels]),
    )


def box_regions(labels: np.ndarray, patch: int, max_objects: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each object's bounding box as a set of tokens.

    ``labels (N, H, W)`` -> ``tokens (N, K, h, w) bool`` (tokens whose centre lies in the box of the
    object's visible pixels; the token nearest the box centre when none does) and ``classes (N, K)``
    (class id, -1 for no object), ``K = max_objects``.
    """
    n, height, width = labels.shape
    h, w = height // patch, width // patch
    cy = np.arange(h) * patch + patch / 2 - 0.5
    cx = np.arange(w) * patch + patch / 2 - 0.5
    tokens = np.zeros((n, max_objects, h, w), dtype=bool)
    classes = np.full((n, max_objects), -1, dtype=np.int64)
    for i, label in enumerate(labels):
        ids = np.unique(label)
        for k, c in enumerate(ids[ids != IGNORE][:max_objects]):
            ys, xs = np.nonzero(label == c)
            inside_y = (cy >= ys.min()) & (cy <= ys.max())
            inside_x = (cx >= xs.min()) & (cx <= xs.max())
            if not inside_y.any():
                inside_y = np.arange(h) == np.argmin(np.abs(cy - (ys.min() + ys.max()) / 2))
            if not inside_x.any():
                inside_x = np.arange(w) == np.argmin(np.abs(cx - (xs.min() + xs.max()) / 2))
            tokens[i, k] = inside_y[:, None] & inside_x[None, :]
            classes[i, k] = c
    return torch.from_numpy(tokens), torch.from_numpy(classes)


def _augment(
    images: torch.Tensor, is_single: torch.Tensor, generator: torch.Generator,
    regions: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Vertical flips for all (caption order is left to right), horizontal flips for singles.

    ``regions (B, K, h, w)`` token masks are flipped with their images.
    """
    flip_v = torch.rand(images.shape[0], generator=generator) < 0.5
    flip_h = (torch.rand(images.shape[0], generator=generator) < 0.5) & is_single
    images = torch.where(flip_v[:, None, None, None], images.flip(2), images)
    images = torch.where(flip_h[:, None, None, None], images.flip(3), images)
    if regions is not None:
        regions = torch.where(flip_v[:, None, None, None], regions.flip(2), regions)
        regions = torch.where(flip_h[:, None, None, None], regions.flip(3), regions)
    return images, regions


def contrastive_loss(image_emb, text_emb, text_ids: torch.Tensor, logit_scale) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets spread over identical texts."""
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_emb @ text_emb.t()
    same = (text_ids[:, None] == text_ids[None, :]).float()
    targets = same / same.sum(1, keepdim=True)
    return 0.5 * (
        torch.sum(-targets * logits.log_softmax(1), 1).mean()
        + torch.sum(-targets * logits.t().log_softmax(1), 1).mean()
    )


def image_embedding(clip: CLIP, images: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
    """``(B, D)`` image embedding of CLIP-normalised ``images`` under the pretraining's pooling."""
    if pooling == "cls":
        return clip.encode_image(images)
    if pooling == "dense_mean":
        return clip.encode_image_dense(images).tokens.mean(1)
    raise ValueError(f"unknown pooling {pooling!r}; use 'cls' or 'dense_mean'")


def embeddings_with_tokens(clip: CLIP, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One pass for both: the CLS embedding ``(B, D)`` of the ordinary last block and the patch
    tokens ``(B, h*w, D)`` of CAT-Seg's dense last block (what FGAseg's cost volume uses).

    The last block shares its ``ln_1`` and q/k/v projections between the two, and its ordinary
    attention and MLP run for the CLS query alone (nothing else reaches the CLS embedding).
    """
    visual = clip.visual
    x = visual.embed(images)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    attn = last.attn
    q, k, v = attn.project_qkv(last.ln_1(x))
    cls_attn = F.scaled_dot_product_attention(
        attn.split_heads(q[:, :1]), attn.split_heads(k), attn.split_heads(v)
    )
    cls = x[:, :1] + attn.out_proj(attn.merge_heads(cls_attn))
    cls = cls + last.mlp(last.ln_2(cls))
    dense = attn.out_proj(v[:, 1:]) + x[:, :1]  # forward_dense, patch tokens only
    dense = dense + last.mlp(last.ln_2(dense))
    return visual.project(cls[:, 0]), visual.project(dense)


def region_loss(tokens, regions, classes, phrase_emb, logit_scale) -> torch.Tensor:
    """Cross-entropy of box-pooled tokens over all phrase prompts.

    ``tokens (B, h*w, D)``, ``regions (B, K, h, w) bool``, ``classes (B, K)`` (-1 = none),
    ``phrase_emb (C, D)``.
    """
    weights = regions.flatten(2).float()  # (B, K, h*w)
    pooled = weights @ tokens / weights.sum(-1, keepdim=True).clamp(min=1)  # (B, K, D)
    valid = classes >= 0
    return vocabulary_loss(pooled[valid], phrase_emb, classes[valid], logit_scale)


def token_region_loss(tokens, regions, classes, phrase_emb, logit_scale, groups) -> torch.Tensor:
    """Per-token cross-entropy over all phrase prompts inside each object's box, self-weighted.

    ``tokens (B, h*w, D)``, ``regions (B, K, h, w) bool``, ``classes (B, K)`` (-1 = none),
    ``phrase_emb (C, D)``, ``groups (C, C) bool`` (same colour and pattern). A token's weight in
    its box is its (detached) probability of the object's colour-and-pattern group, normalised
    over the box: tokens of the background or of other objects inside the box count little.
    """
    logits = logit_scale.exp() * F.normalize(tokens, dim=-1) @ F.normalize(phrase_emb, dim=-1).t()
    log_probs = logits.log_softmax(-1)  # (B, T, C)
    valid = classes >= 0
    safe = classes.clamp(min=0)
    group_prob = torch.einsum("btc,bkc->bkt", log_probs.detach().exp(), groups[safe].float())
    weights = regions.flatten(2).float() * group_prob  # (B, K, T)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    target = torch.gather(log_probs.transpose(1, 2), 1, safe[..., None].expand_as(weights))
    return -(weights * target).sum(-1)[valid].mean()


def vocabulary_loss(image_emb, phrase_emb, class_ids: torch.Tensor, logit_scale) -> torch.Tensor:
    """Cross-entropy of single-object images ``(B, D)`` over all phrase prompts ``(C, D)``."""
    logits = logit_scale.clamp(max=math.log(100)).exp() * (
        F.normalize(image_emb, dim=-1) @ F.normalize(phrase_emb, dim=-1).t()
    )
    return F.cross_entropy(logits, class_ids)


def compact_embedding(embedding: torch.nn.Embedding, used: torch.Tensor) -> torch.nn.Embedding:
    """A trainable copy of the rows ``used (K,)`` (sorted ids) of ``embedding``."""
    compact = torch.nn.Embedding(len(used), embedding.embedding_dim)
    with torch.no_grad():
        compact.weight.copy_(embedding.weight[used])
    return compact


def compact_ids(token_ids: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Token ids -> positions in the sorted ``used`` ids (order kept: EOT stays the largest)."""
    lookup = torch.zeros(int(used.max()) + 1, dtype=torch.long)
    lookup[used] = torch.arange(len(used))
    return lookup[token_ids]


def pretrain_clip(
    config: PretrainConfig, world: WorldConfig, seed: int = 0, progress: bool = True,
    log: Callable[[str], None] = print,
) -> Tuple[CLIP, Dict[str, float]]:
    """Train a tiny CLIP from scratch; returns the model (eval mode) and stats."""
    vocab = build_vocabulary(world.split_seed)
    start = time.time()
    images, texts, labels = build_pretraining_data(
        world, vocab, config.num_images, seed, progress, config.partial_captions
    )
    regions, region_classes = (
        box_regions(labels, config.clip.vision_patch_size, world.max_objects)
        if config.region_loss > 0 else (None, None)
    )
    # the class of each image's first object (a single object's class; unused for scenes)
    single_class = torch.from_numpy(labels.reshape(len(labels), -1).min(1).astype(np.int64))
    del labels
    unique_texts = sorted(set(texts))
    text_index = {t: i for i, t in enumerate(unique_texts)}
    all_tokens = tokenize(unique_texts, context_length=config.clip.context_length)
    text_ids = torch.tensor([text_index[t] for t in texts])
    is_single = torch.arange(len(texts)) < config.num_images // 2
    images_t = torch.from_numpy(images)  # (N, H, W, 3) uint8, converted per batch
    phrase_tokens = tokenize([prompt(p) for p in vocab.phrases], context_length=config.clip.context_length)
    attributes = torch.tensor(vocab.attributes)
    same_group = (attributes[:, None, :2] == attributes[None, :, :2]).all(-1)  # (C, C)
    gen_time = time.time() - start

    clip = build_clip(config.clip, seed=seed)
    clip.train()
    # the world's texts use ~40 of the 49 408 BPE tokens: train only their embedding rows (the
    # others get no gradient, so AdamW would leave them unchanged anyway) and save the optimizer
    # a 6.3 M-parameter update every step
    full_embedding, used = clip.token_embedding, torch.unique(torch.cat([all_tokens.flatten(), phrase_tokens.flatten()]))
    clip.token_embedding = compact_embedding(full_embedding, used)
    all_tokens, phrase_tokens = (compact_ids(t, used) for t in (all_tokens, phrase_tokens))
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, fused=True,  # one kernel per step instead of ~10 passes over the weights
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=max(1, config.steps), pct_start=0.15
    )
    generator = torch.Generator().manual_seed(seed)
    half = config.batch_size - round(config.batch_size * config.scene_share)  # single objects first
    singles_n = int(is_single.sum())
    bar = _bar(config.steps, "stage 1/3: pretrain tiny CLIP", progress)
    losses = []
    for step in range(config.steps):
        # balanced halves: single objects and scenes
        idx = torch.cat([
            torch.randint(0, singles_n, (half,), generator=generator),
            torch.randint(singles_n, len(texts), (config.batch_size - half,), generator=generator),
        ])
        batch = images_t[idx].permute(0, 3, 1, 2).float() / 255.0
        batch, batch_regions = _augment(
            batch, is_single[idx], generator, regions[idx] if regions is not None else None
        )
        batch = normalize(batch)
        ids = text_ids[idx]
        unique_ids, inverse = torch.unique(ids, return_inverse=True)
        text_emb = clip.encode_text(all_tokens[unique_ids])[inverse]
        if config.region_loss > 0 and config.pooling == "cls":
            image_emb, tokens = embeddings_with_tokens(clip, batch)
        else:
            image_emb, tokens = image_embedding(clip, batch, config.pooling), None
        loss = contrastive_loss(image_emb, text_emb, ids, clip.logit_scale)
        phrase_emb = (
            clip.encode_text(phrase_tokens) if config.vocab_loss > 0 or config.region_loss > 0 else None
        )
        if config.vocab_loss > 0:
            loss = loss + config.vocab_loss * vocabulary_loss(
                image_emb[:half], phrase_emb, single_class[idx[:half]], clip.logit_scale
            )
        if config.region_loss > 0:
            if tokens is None:
                tokens = clip.encode_image_dense(batch).tokens
            if config.region_pooling in ("mean", "both"):
                loss = loss + config.region_loss * region_loss(
                    tokens, batch_regions, region_classes[idx], phrase_emb, clip.logit_scale
                )
            if config.region_pooling in ("token", "both"):
                loss = loss + config.region_loss * token_region_loss(
                    tokens, batch_regions, region_classes[idx], phrase_emb, clip.logit_scale, same_group
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    with torch.no_grad():
        full_embedding.weight[used] = clip.token_embedding.weight
    clip.token_embedding = full_embedding
    clip.eval()
    stats = {
        "data_seconds": round(gen_time, 1),
        "train_seconds": round(time.time() - start - gen_time, 1),
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
        "loss_curve": [round(v, 4) for v in losses],
    }
    return clip, stats


@torch.no_grad()
def zero_shot_accuracy(
    clip: CLIP, world: WorldConfig, count: int = 720, seed: int = 10_000, pooling: str = "cls",
) -> Dict[str, float]:
    """Classify held-out single-object images among all 72 prompted phrases.

    Returns accuracy on seen and unseen classes and per attribute (colour, pattern, shape).
    """
    vocab = build_vocabulary(world.split_seed)
    singles = generate_scenes(world, count, seed, "clip-singles", vocab=vocab, num_objects=1, centred=True)
    truth = np.array([[c for c in np.unique(l) if c != 255][0] for l in singles.labels])
    tokens = tokenize([prompt(p) for p in vocab.phrases], context_length=clip.context_length)
    text = F.normalize(clip.encode_text(tokens.to(clip.device)), dim=-1)
    preds = []
    for start in range(0, count, 256):
        images, _ = singles.batch(range(start, min(count, start + 256)))
        emb = F.normalize(image_embedding(clip, normalize(images).to(clip.device), pooling), dim=-1)
        preds.append((emb @ text.t()).argmax(1).cpu().numpy())
    pred = np.concatenate(preds)
    attrs_t, attrs_p = np.array(vocab.attributes)[truth], np.array(vocab.attributes)[pred]
    unseen = vocab.is_unseen()[truth]
    result = {
        "seen": float((pred == truth)[~unseen].mean()),
        "unseen": float((pred == truth)[unseen].mean()) if unseen.any() else float("nan"),
    }
    for k, name in enumerate(["colour", "pattern", "shape"]):
        result[name] = float((attrs_t[:, k] == attrs_p[:, k]).mean())
    return result


def save_clip(clip: CLIP, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {k: v.detach().contiguous() for k, v in clip.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def load_clip_file(path: Path, config: CLIPConfig) -> CLIP:
    from safetensors.torch import load_file

    clip = build_clip(config)
    clip.load_state_dict(load_file(str(path)))
    return clip.eval()


def pretrained_tiny_clip(
    config: PretrainConfig, world: WorldConfig, seed: int = 0, use_cache: bool = True,
    progress: bool = True, log: Callable[[str], None] = print,
) -> Tuple[CLIP, dict]:
    """The cached tiny CLIP for this config and seed, training (and caching) it if needed.

    The cache file is ``cache_dir()/tiny-clip-<hash>.safetensors``; the hash covers the CLIP,
    pretraining and world configs and the seed. ``use_cache=False`` retrains and overwrites.
    """
    path = clip_cache_path(config, world, seed)
    if use_cache and path.is_file():
        try:
            clip = load_clip_file(path, config.clip)
            meta = json.loads(path.with_suffix(".json").read_text())
            meta["cached"] = True
            log(f"stage 1/3: tiny CLIP loaded from cache {path}")
            return clip, meta
        except Exception as exc:  # a corrupt cache is rebuilt, not fatal
            log(f"stage 1/3: ignoring unreadable cache {path} ({exc})")
    clip, stats = pretrain_clip(config, world, seed, progress, log)
    meta = {"seed": seed, "pretrain": config.to_dict(), **stats}
    meta["zero_shot"] = zero_shot_accuracy(clip, world, pooling=config.pooling)
    try:
        save_clip(clip, path, meta)
        log(f"stage 1/3: tiny CLIP trained in {stats['train_seconds']:.0f} s, cached at {path}")
    except OSError as exc:
        log(f"stage 1/3: could not write the cache {path} ({exc})")
    meta["cached"] = False
    return clip, meta


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0, dynamic_ncols=True)
