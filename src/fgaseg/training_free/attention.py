"""Training-free attention variants for CLIP's last block, as pure functions on tensors.

All functions take per-head projections ``q, k, v`` of shape ``(B, heads, L, d)`` (the ``L``
tokens include CLIP's CLS token first) and return the attended values ``(B, heads, L, d)``,
before heads are merged and ``out_proj`` is applied. ``scale`` defaults to ``d ** -0.5``.

- :func:`identity_attention` - MaskCLIP (Zhou et al., ECCV 2022): every token keeps its own
  value embedding; queries and keys are not used.
- :func:`query_query_attention` - ClearCLIP (Lan et al., ECCV 2024): ``softmax(q q^T) v``.
- :func:`correlative_attention` - SCLIP (Wang et al., ECCV 2024):
  ``(softmax(q q^T) + softmax(k k^T)) v``.
- :func:`neighbourhood_attention` - NACLIP (Hajimiri et al., WACV 2025):
  ``softmax(k k^T * scale + G) v`` with ``G`` a Gaussian over the patch grid.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def _default_scale(q: torch.Tensor, scale: Optional[float]) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """At least float32, so half-precision towers get stable softmaxes; float64 stays."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _self_similarity_softmax(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Row-wise ``softmax(x x^T * scale)``: ``(B, h, L, d)`` -> ``(B, h, L, L)``, >= float32."""
    x = _upcast(x)
    return torch.softmax(x @ x.transpose(-2, -1) * scale, dim=-1)


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's value path: the attention matrix is the identity, so the output is ``v``."""
    return v


def query_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None
) -> torch.Tensor:
    """ClearCLIP's self-self attention ``softmax(q q^T * scale) v``; ``k`` is unused."""
    weights = _self_similarity_softmax(q, _default_scale(q, scale))
    return (weights @ _upcast(v)).to(v.dtype)


def correlative_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None
) -> torch.Tensor:
    """SCLIP's correlative self-attention ``(softmax(q q^T s) + softmax(k k^T s)) v``.

    The two row-stochastic maps are summed, not averaged, as in SCLIP's paper and code; since
    SCLIP keeps the residual, this weighs the attention branch twice against it.
    """
    s = _default_scale(q, scale)
    weights = _self_similarity_softmax(q, s) + _self_similarity_softmax(k, s)
    return (weights @ _upcast(v)).to(v.dtype)


def gaussian_spatial_prior(
    grid: Tuple[int, int],
    std: float = 5.0,
    num_prefix_tokens: int = 1,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """NACLIP's additive attention prior ``(P + h*w, P + h*w)`` in float32.

    Between patch tokens at grid positions ``(y1, x1)`` and ``(y2, x2)`` (row-major order) the
    entry is ``exp(-((y1 - y2)^2 + (x1 - x2)^2) / (2 std^2))``; rows and columns of the
    ``P = num_prefix_tokens`` leading tokens (CLS) are 0.
    """
    if std <= 0:
        raise ValueError(f"the Gaussian standard deviation must be positive, got {std}")
    h, w = grid
    ys = torch.arange(h, device=device, dtype=torch.float32).repeat_interleave(w)
    xs = torch.arange(w, device=device, dtype=torch.float32).repeat(h)
    dist2 = (ys[:, None] - ys[None, :]) ** 2 + (xs[:, None] - xs[None, :]) ** 2
    patch_prior = torch.exp(-dist2 / (2.0 * std * std))
    size = num_prefix_tokens + h * w
    prior = torch.zeros(size, size, device=device, dtype=torch.float32)
    prior[num_prefix_tokens:, num_prefix_tokens:] = patch_prior
    return prior


def neighbourhood_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: Tuple[int, int],
    std: float = 5.0,
    scale: Optional[float] = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """NACLIP's neighbourhood attention ``softmax(k k^T * scale + G) v``; ``q`` is unused.

    ``G`` is :func:`gaussian_spatial_prior` (added unscaled, as in NACLIP's code), so every
    patch attends more to its spatial neighbours; ``L`` must equal ``P + h*w``.
    """
    h, w = grid
    if k.shape[-2] != num_prefix_tokens + h * w:
        raise ValueError(
            f"{k.shape[-2]} tokens do not match a {h}x{w} grid "
            f"with {num_prefix_tokens} prefix tokens"
        )
    kf = _upcast(k)
    logits = kf @ kf.transpose(-2, -1) * _default_scale(k, scale)
    prior = gaussian_spatial_prior(grid, std, num_prefix_tokens, device=k.device)
    logits = logits + prior.to(logits.dtype)
    weights = torch.softmax(logits, dim=-1)
    return (weights @ _upcast(v)).to(v.dtype)
