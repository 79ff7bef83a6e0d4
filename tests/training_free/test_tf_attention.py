"""Attention variants against small hand-computed cases (3 tokens, tiny widths)."""

import math

import numpy as np
import pytest
import torch

from fgaseg.training_free.attention import (
    correlative_attention,
    gaussian_spatial_prior,
    identity_attention,
    neighbourhood_attention,
    query_query_attention,
)

# 3 tokens, one head of width 2; scale = 2 ** -0.5
Q = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
K = [[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]
V = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def heads(rows):
    """(L, d) nested list -> (1, 1, L, d) tensor."""
    return torch.tensor(rows, dtype=torch.float64)[None, None]


def softmax_rows_np(logits):
    """Plain-Python softmax of each row (independent of torch)."""
    out = []
    for row in logits:
        exps = [math.exp(v) for v in row]
        total = sum(exps)
        out.append([e / total for e in exps])
    return np.array(out)


def self_attention_np(x, v, scale, prior=None):
    x, v = np.array(x), np.array(v)
    logits = [[scale * float(np.dot(a, b)) for b in x] for a in x]
    if prior is not None:
        logits = [[logits[i][j] + prior[i][j] for j in range(len(x))] for i in range(len(x))]
    return softmax_rows_np(logits) @ v


def test_identity_attention_returns_values():
    v = heads(V)
    assert torch.equal(identity_attention(heads(Q), heads(K), v), v)


def test_query_query_attention_by_hand():
    out = query_query_attention(heads(Q), heads(K), heads(V))[0, 0].numpy()
    # row 0: q0.q = [1, 0, 1] -> tokens 0 and 2 weigh the same, so the mean of 1 and 5 with 3
    assert out[0] == pytest.approx([3.0, 4.0], abs=1e-9)
    # row 1: q1.q = [0, 1, 1] / sqrt2 -> weights [1, e^.7071, e^.7071] / 5.0562
    #        = [.19777, .40111, .40111]
    assert out[1] == pytest.approx([3.40665, 4.40665], abs=1e-4)
    expected = self_attention_np(Q, V, 2**-0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-9)


def test_query_query_attention_ignores_keys():
    a = query_query_attention(heads(Q), heads(K), heads(V))
    b = query_query_attention(heads(Q), torch.randn(1, 1, 3, 2, dtype=torch.float64), heads(V))
    assert torch.equal(a, b)


def test_correlative_attention_by_hand():
    out = correlative_attention(heads(Q), heads(K), heads(V))[0, 0].numpy()
    # row 1: k1 = 0, so softmax(k1.k) is uniform -> mean of V = [3, 4];
    #        plus the q-q row [3.40665, 4.40665]
    assert out[1] == pytest.approx([6.40665, 8.40665], abs=1e-4)
    expected = self_attention_np(Q, V, 2**-0.5) + self_attention_np(K, V, 2**-0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-9)


def test_gaussian_prior_by_hand():
    prior = gaussian_spatial_prior((2, 2), std=1.0).numpy()
    assert prior.shape == (5, 5)
    assert np.all(prior[0] == 0) and np.all(prior[:, 0] == 0)  # CLS row and column
    n, d = math.exp(-0.5), math.exp(-1.0)  # side neighbour, diagonal neighbour at std 1
    expected = np.array([[1, n, n, d], [n, 1, d, n], [n, d, 1, n], [d, n, n, 1]])
    np.testing.assert_allclose(prior[1:, 1:], expected, rtol=1e-6)


def test_gaussian_prior_non_square_grid_row_major():
    prior = gaussian_spatial_prior((2, 3), std=2.0, num_prefix_tokens=0).numpy()
    # token 0 is (0, 0), token 5 is (1, 2): squared distance 1 + 4 = 5
    assert prior[0, 5] == pytest.approx(math.exp(-5 / 8), rel=1e-6)
    assert prior[2, 3] == pytest.approx(math.exp(-(1 + 4) / 8), rel=1e-6)  # (0,2) vs (1,0)
    assert prior[1, 4] == pytest.approx(math.exp(-1 / 8), rel=1e-6)  # (0,1) vs (1,1)


def test_neighbourhood_attention_by_hand():
    # CLS + a 1x2 grid, zero keys: the logits are the prior alone
    zeros = torch.zeros(1, 1, 3, 2, dtype=torch.float64)
    out = neighbourhood_attention(heads(Q), zeros, heads(V), grid=(1, 2), std=1.0)[0, 0].numpy()
    assert out[0] == pytest.approx([3.0, 4.0], abs=1e-9)  # CLS: no prior, uniform
    # patch 0: logits [0, 1, e^-.5] -> weights [.18010, .48957, .33033]
    assert out[1] == pytest.approx([3.30046, 4.30046], abs=1e-4)


def test_neighbourhood_attention_uses_keys_and_prior():
    prior = gaussian_spatial_prior((1, 2), std=1.0).double().numpy()
    out = neighbourhood_attention(heads(Q), heads(K), heads(V), grid=(1, 2), std=1.0)[0, 0].numpy()
    np.testing.assert_allclose(out, self_attention_np(K, V, 2**-0.5, prior), rtol=1e-9)
    # queries are not used
    other = neighbourhood_attention(heads(K), heads(K), heads(V), grid=(1, 2), std=1.0)
    other = other[0, 0].numpy()
    np.testing.assert_allclose(out, other, rtol=1e-12)


def test_neighbourhood_attention_rejects_wrong_grid():
    with pytest.raises(ValueError):
        neighbourhood_attention(heads(Q), heads(K), heads(V), grid=(2, 2))


@pytest.mark.parametrize("fn", [query_query_attention, correlative_attention])
def test_two_heads_are_independent(fn):
    q2 = torch.tensor([Q, K], dtype=torch.float64)[None]  # head 0 uses Q, head 1 uses K
    k2 = torch.tensor([K, Q], dtype=torch.float64)[None]
    v2 = torch.tensor([V, [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]], dtype=torch.float64)[None]
    out = fn(q2, k2, v2)
    for h in range(2):
        single = fn(q2[:, h : h + 1], k2[:, h : h + 1], v2[:, h : h + 1])
        torch.testing.assert_close(out[:, h : h + 1], single)
    # head 1 by hand for the q-q case: x = K, so row 1 (zero vector) is the mean of v
    if fn is query_query_attention:
        assert out[0, 1, 1].tolist() == pytest.approx([1.0, 1.0], abs=1e-9)


def test_explicit_scale():
    out = query_query_attention(heads(Q), heads(K), heads(V), scale=0.0)[0, 0]
    # zero scale -> uniform weights -> every row is the mean value
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0]] * 3, dtype=torch.float64))
