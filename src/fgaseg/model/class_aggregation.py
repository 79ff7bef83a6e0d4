"""Class aggregation: linear attention over the class axis at every (pooled) pixel.

Official ``ClassTransformerLayer`` + ``AttentionLayer`` + ``LinearAttention`` (elu + 1 feature
map, "Transformers are RNNs"). The class sequence is padded with a learnable token up to
``pad_len``; text guidance (projected class embeddings) is concatenated to the q/k inputs.

The implementation is exact but organised for speed and bounded memory:

* Every pixel's attention over the classes is independent of the other pixels, so inference
  runs in chunks of pixels (all classes of a few pixels at a time): memory stays bounded for
  any number of classes, the per-pixel sums ``sum_s phi(k_s) v_s^T`` and ``sum_s phi(k_s)``
  are single ``(d, T) @ (T, d)`` products, and the tokens stay in cache from the LayerNorm to
  the last residual.
* The padding tokens are the same at every pixel (same token, same guidance), so their
  ``n_pad`` identical contributions are computed once as ``n_pad * phi(k_pad) v_pad^T``.
* The text-guidance half of the q/k projections depends on the class only, not on the pixel,
  so it is computed once per class and broadcast.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.model.parallel_chunks import for_each_chunk


_ROWS = 2048  # (pixel, class) tokens per pixel chunk at inference: the MLP's hidden stays ~4 MB


def _graph_capture() -> bool:
    """True while tracing / compiling / exporting: no loops writing into preallocated outputs."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def _residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + y``, in place (no new large temporary) when no gradient is being recorded."""
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        return x + y
    return x.add_(y)


class LinearAttention(nn.Module):
    """Parameter-free; kept as a module for parity with the official structure."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps


class AttentionLayer(nn.Module):
    """q/k from ``[x, guidance]``, v from ``x`` (official names q, k, v; no output projection)."""

    def __init__(self, hidden_dim: int, guidance_dim: int, nheads: int = 8) -> None:
        super().__init__()
        self.nheads = nheads
        self.hidden_dim = hidden_dim
        self.q = nn.Linear(hidden_dim + guidance_dim, hidden_dim)
        self.k = nn.Linear(hidden_dim + guidance_dim, hidden_dim)
        self.v = nn.Linear(hidden_dim, hidden_dim)
        self.attention = LinearAttention()

    def _proj(self, lin: nn.Linear, x: torch.Tensor, g: Optional[torch.Tensor]) -> torch.Tensor:
        """``lin([x, g])`` with ``x (..., T, C)`` and per-class ``g (B, T, Cg)`` broadcast over pixels."""
        d = self.hidden_dim
        if g is None:
            return lin(x)
        return F.linear(x, lin.weight[:, :d]) + F.linear(g, lin.weight[:, d:], lin.bias)

    def queries(self, x: torch.Tensor, g: Optional[torch.Tensor]) -> torch.Tensor:
        return self._proj(self.q, x, g)

    def keys_values(self, x: torch.Tensor, g: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._proj(self.k, x, g), self.v(x)

    def fused_qkv(self, guided: bool) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """``(W (3C, C), b (3C,), Wg (2C, Cg) | None)``: one GEMM gives q|k|v from the tokens; the
        guidance half of q|k (``Wg``) is per class and added separately."""
        d = self.hidden_dim
        if not guided:
            w = torch.cat([self.q.weight, self.k.weight, self.v.weight], dim=0)
            return w, torch.cat([self.q.bias, self.k.bias, self.v.bias]), None
        w = torch.cat([self.q.weight[:, :d], self.k.weight[:, :d], self.v.weight], dim=0)
        wg = torch.cat([self.q.weight[:, d:], self.k.weight[:, d:]], dim=0)
        return w, torch.cat([self.q.bias, self.k.bias, self.v.bias]), wg


class ClassTransformerLayer(nn.Module):
    """Pre-LN linear-attention block over classes; ``(B, C, T, H, W)`` in and out."""

    def __init__(self, hidden_dim: int = 64, guidance_dim: int = 64, nheads: int = 8,
                 pooling_size: Tuple[int, int] = (4, 4), eval_pooling_size: Tuple[int, int] = (1, 1),
                 pad_len: int = 256) -> None:
        super().__init__()
        self.pooling_size = tuple(pooling_size)
        self.eval_pooling_size = tuple(eval_pooling_size)
        self.attention = AttentionLayer(hidden_dim, guidance_dim, nheads=nheads)
        self.MLP = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim * 4),
            nn.ReLU(),
            nn.Linear(hidden_dim * 4, hidden_dim),
        )
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.pad_len = pad_len
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, hidden_dim)) if pad_len > 0 else None
        self.padding_guidance = (
            nn.Parameter(torch.zeros(1, 1, guidance_dim)) if pad_len > 0 and guidance_dim > 0 else None
        )

    def current_pooling(self) -> Tuple[int, int]:
        return self.pooling_size if self.training else self.eval_pooling_size

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """Average pooling of every class slice: ``(B, C, T, H, W)`` -> ``(B, C, T, H', W')``."""
        ph, pw = self.current_pooling()
        if (ph, pw) == (1, 1):
            return x
        B, C, T, H, W = x.shape
        y = F.avg_pool2d(x.transpose(1, 2).reshape(B * T, C, H, W), (ph, pw))
        return y.reshape(B, T, C, *y.shape[-2:]).transpose(1, 2)

    def _padding_state(self, T: int, w: torch.Tensor, bias: torch.Tensor, wg: Optional[torch.Tensor]
                       ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The ``n_pad = pad_len - T`` padding tokens' share of the sums, the same at every pixel:
        ``(n_pad * phi(k_pad)^T v_pad (h, d, d), n_pad * phi(k_pad) (h, 1, d))``, or Nones."""
        n_pad = max(self.pad_len - T, 0) if self.padding_tokens is not None else 0
        if n_pad == 0:
            return None, None
        C = self.padding_tokens.shape[-1]
        heads = self.attention.nheads
        d = C // heads
        qkv_pad = F.linear(self.norm1(self.padding_tokens.reshape(1, C)), w, bias).reshape(3 * C)
        if wg is not None:
            qkv_pad = qkv_pad.clone()
            qkv_pad[: 2 * C] += F.linear(self.padding_guidance.reshape(1, -1), wg).reshape(2 * C)
        k_pad = elu_feature_map(qkv_pad[C:2 * C].reshape(heads, 1, d))
        v_pad = qkv_pad[2 * C:].reshape(heads, 1, d)
        return n_pad * (k_pad.transpose(-1, -2) @ v_pad), n_pad * k_pad

    def _pixels(self, t: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, gqk: Optional[torch.Tensor],
                kv_pad: Optional[torch.Tensor], ks_pad: Optional[torch.Tensor]) -> torch.Tensor:
        """The layer (without the outer residual) on the tokens ``t (B, l, T, C)`` of ``l`` pixels.

        Heads are handled one at a time on strided views of the q|k|v GEMM output: every
        (pixel, head) pair is one ``(d, T) @ (T, d)`` product over all its classes (no copies of
        q, k or v). The official code divides v by the sequence length and multiplies the output
        back; that cancels exactly and is not done.
        """
        B, l, T, C = t.shape
        heads = self.attention.nheads
        d = C // heads
        inplace = not (torch.is_grad_enabled() or _graph_capture())
        qkv = F.linear(self.norm1(t), w, bias)  # (B, l, T, 3C)
        if gqk is not None:
            qkv[..., : 2 * C] += gqk.to(qkv.dtype)
        if inplace:  # phi(q), phi(k) over the q|k columns, without a new tensor
            F.elu(qkv[..., : 2 * C], inplace=True).add_(1)
            qk = qkv
        else:
            qk = elu_feature_map(qkv[..., : 2 * C])
        qk, v = qk.flatten(0, 1), qkv.flatten(0, 1)  # (B*l, T, .)
        eps = self.attention.attention.eps
        outs = []
        for i in range(heads):
            q, k = qk[..., i * d:(i + 1) * d], qk[..., C + i * d:C + (i + 1) * d]
            vi = v[..., 2 * C + i * d:2 * C + (i + 1) * d]
            kt = k.transpose(1, 2)  # (B*l, d, T)
            if kv_pad is None:
                kv, ksum = torch.bmm(kt, vi), k.sum(dim=1, keepdim=True)
            else:
                pad = kv_pad[i].to(vi.dtype).expand(kt.shape[0], d, d)
                kv, ksum = torch.baddbmm(pad, kt, vi), k.sum(dim=1, keepdim=True) + ks_pad[i].to(k.dtype)
            z = torch.bmm(q, ksum.transpose(1, 2)).add_(eps).reciprocal_()  # (B*l, T, 1)
            outs.append(torch.bmm(q, kv).mul_(z))
        att = torch.stack(outs, dim=2).view(B, l, T, C)
        del outs, qkv, qk, v
        fc1, fc2 = self.MLP[0], self.MLP[2]
        att = _residual(att, t)
        hidden = F.linear(self.norm2(att), fc1.weight, fc1.bias)
        hidden = hidden.relu_() if inplace else hidden.relu()
        return _residual(att, F.linear(hidden, fc2.weight, fc2.bias))

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor],
                chunk_size: Optional[int] = None, overwrite_input: bool = False) -> torch.Tensor:
        """Args:
            x: ``(B, C, T, H, W)`` cost embedding.
            guidance: ``(B, T, Cg)`` projected text guidance, or None.
            chunk_size: accepted for compatibility and ignored: the layer works on chunks of
                pixels (each pixel's class attention is independent of the others), so its
                memory is bounded for any number of classes and no chunking over classes is
                needed.
            overwrite_input: the caller no longer needs ``x``: at inference the result may then
                be written into ``x``'s memory (pixel chunk by pixel chunk, each one read
                before it is written) instead of a new tensor.

        At inference the pixels are processed ``_ROWS // (B*T)`` at a time: all their
        (pixel, class) tokens go through LayerNorm, q|k|v, the attention, the MLP and the
        residuals while they are in cache; during training (autograd) and graph capture all
        pixels at once.
        """
        B, C, T, H, W = x.shape
        xp = self._pool(x)
        Hp, Wp = xp.shape[-2:]
        L = Hp * Wp
        tokens = xp.permute(0, 3, 4, 2, 1).reshape(B, L, T, C)  # (B, L, T, C)
        guided = guidance is not None
        w, bias, wg = self.attention.fused_qkv(guided)
        gqk = F.linear(guidance, wg)[:, None] if guided else None  # (B, 1, T, 2C), per class
        kv_pad, ks_pad = self._padding_state(T, w, bias, wg)
        same_size = (Hp, Wp) == (H, W)
        if torch.is_grad_enabled() or _graph_capture():  # one functional pass (autograd, export)
            y = self._pixels(tokens, w, bias, gqk, kv_pad, ks_pad)
            y = y + tokens if same_size else y
        else:
            step = max(1, _ROWS // max(B * T, 1))
            # tokens is x itself (memory (B, H, W, T, C), as the Swin blocks write it) or a copy
            own = tokens.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
            y = tokens if same_size and (own or overwrite_input) else torch.empty_like(tokens)

            def chunk(p: int) -> None:
                t = tokens[:, p:p + step]
                part = self._pixels(t, w, bias, gqk, kv_pad, ks_pad)
                # official: x + pool^-1(t + att + mlp); without pooling the outer residual is here
                if same_size:
                    torch.add(part, t, out=y[:, p:p + step])
                else:
                    y[:, p:p + step] = part

            for_each_chunk(chunk, range(0, L, step), x.device)
        if same_size:
            return y.view(B, H, W, T, C).permute(0, 4, 3, 1, 2)
        y = y.reshape(B, Hp, Wp, T, C).permute(0, 4, 3, 1, 2)  # (B, C, T, Hp, Wp)
        y = F.interpolate(y.transpose(1, 2).reshape(B * T, C, Hp, Wp), size=(H, W),
                          mode="bilinear", align_corners=True)
        y = y.reshape(B, T, C, H, W).transpose(1, 2)
        return x + y
