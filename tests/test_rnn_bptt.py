"""BPTT through `run`: finite differences on drawn sizes, and Goodfellow et al.'s closed-form equations."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from rnn.rolled import as_tuple
from rnn_helpers import CELL_KINDS, make_cell, random_state


@pytest.mark.parametrize("backend", ["graph", "numba"])
@settings(max_examples=12)
@given(kind=st.sampled_from(CELL_KINDS), T=st.integers(1, 4), B=st.integers(1, 3), I=st.integers(1, 3),
       H=st.integers(1, 3), batch_first=st.booleans(), seed=st.integers(0, 2**16))
@example(kind="lstm", T=1, B=1, I=1, H=1, batch_first=False, seed=0)
@example(kind="gru", T=1, B=1, I=2, H=1, batch_first=True, seed=1)
def test_run_gradients_match_finite_differences(backend, kind, T, B, I, H, batch_first, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, I, H, seed=seed)
    shape = (B, T, I) if batch_first else (T, B, I)
    xs = mg.Tensor(rng.uniform(-1, 1, shape), requires_grad=True)
    state0 = as_tuple(random_state(cell, B, rng, requires_grad=True))
    params = cell.parameters()

    def f(xs, *rest):
        # The parameters are passed only so gradcheck perturbs them; the cell reads them itself.
        s0 = rest[:len(state0)]
        res = rnn.run(cell, xs, s0 if len(s0) > 1 else s0[0], batch_first=batch_first, backend=backend)
        return (res.outputs, *as_tuple(res.state))

    assert mg.gradcheck(f, [xs, *state0, *params])


def softmax(o):
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def goodfellow_bptt(U, W, b, V, c, xs, h0, ys):
    """Eqs. 10.16-10.22 of Goodfellow et al., rows as batch examples, summed over the batch."""
    T = len(xs)
    hs, yhat = [h0], []
    for t in range(T):
        hs.append(np.tanh(b + hs[-1] @ W.T + xs[t] @ U.T))
        yhat.append(softmax(c + hs[-1] @ V.T))
    g_o = [yhat[t] - np.eye(V.shape[0])[ys[t]] for t in range(T)]            # 10.18
    g_h = [None] * T
    g_h[T - 1] = g_o[T - 1] @ V                                               # 10.19
    for t in range(T - 2, -1, -1):                                            # 10.20
        g_h[t] = ((1 - hs[t + 2] ** 2) * g_h[t + 1]) @ W + g_o[t] @ V
    d = [(1 - hs[t + 1] ** 2) * g_h[t] for t in range(T)]                     # diag(1 - h(t)^2) grad_h(t)
    return {"c": sum(g.sum(0) for g in g_o),                                   # 10.22
            "b": sum(x.sum(0) for x in d),
            "V": sum(g_o[t].T @ hs[t + 1] for t in range(T)),
            "W": sum(d[t].T @ hs[t] for t in range(T)),
            "U": sum(d[t].T @ xs[t] for t in range(T)),
            "h0": d[0] @ W}


@pytest.mark.parametrize("backend", ["graph", "numba"])
@pytest.mark.parametrize("T,B", [(1, 1), (4, 1), (6, 3)])
def test_elman_bptt_matches_goodfellow_closed_form(T, B, backend):
    rng = np.random.default_rng(T * 10 + B)
    I, H, K = 3, 5, 4
    cell = rnn.ElmanCell(I, H, rng=rng)
    V = mg.nn.Parameter(rng.normal(size=(K, H)))
    c = mg.nn.Parameter(rng.normal(size=K))
    xs, ys = rng.normal(size=(T, B, I)), rng.integers(0, K, size=(T, B))
    h0 = mg.Tensor(rng.normal(size=(B, H)) * 0.5, requires_grad=True)

    res = rnn.run(cell, xs, h0, backend=backend)
    assert res.backend == backend
    o = res.outputs @ V.T + c                                                 # (T, B, K)
    logp = o.log_softmax(axis=-1)
    loss = -logp[np.arange(T)[:, None], np.arange(B)[None, :], ys].sum()
    loss.backward()

    want = goodfellow_bptt(cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data + cell.bias_hh.data,
                           V.data, c.data, xs, h0.data, ys)
    got = {"c": c.grad, "V": V.grad, "W": cell.weight_hh.grad, "U": cell.weight_ih.grad, "h0": h0.grad}
    for k, g in got.items():
        np.testing.assert_allclose(g, want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    # b is split in two (bias_ih, bias_hh) as in PyTorch; each receives the whole gradient of b.
    np.testing.assert_allclose(cell.bias_ih.grad, want["b"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cell.bias_hh.grad, want["b"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_batch_first_is_the_transpose_of_time_major(kind):
    rng = np.random.default_rng(11)
    cell = make_cell(kind, 2, 3)
    xs = rng.normal(size=(5, 4, 2))
    state0 = random_state(cell, 4, rng)
    tm = rnn.run(cell, xs, state0)
    xs_bf = mg.Tensor(xs.transpose(1, 0, 2).copy(), requires_grad=True)
    bf = rnn.run(cell, xs_bf, state0, batch_first=True)
    assert bf.outputs.shape == (4, 5, 3)
    np.testing.assert_allclose(bf.outputs.data, tm.outputs.data.transpose(1, 0, 2), rtol=1e-14)
    for a, b in zip(as_tuple(bf.state), as_tuple(tm.state)):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-14)
    # Gradients reach xs in its own (B, T, I) layout: the loss on output (b, t) only moves xs[b, :t+1].
    bf.outputs[1, 2].sum().backward()
    assert xs_bf.grad.shape == (4, 5, 2)
    assert np.all(xs_bf.grad[[0, 2, 3]] == 0) and np.all(xs_bf.grad[1, 3:] == 0)
    assert np.all(xs_bf.grad[1, 2] != 0)
