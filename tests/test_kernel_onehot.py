"""One-hot inputs (a character model's x(t)) on the kernels: the hoisted x(t) @ U^T is a gather of
U's columns and its gradient a scatter, which must give what the product gives — the explicit
graph's outputs and gradients — and must not mistake other inputs for one-hot rows."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import rnn
from rnn.kernels import blas


def onehot(ids, width):
    out = np.zeros(ids.shape + (width,))
    out[(*np.indices(ids.shape, sparse=True), ids)] = 1.0
    return out


@given(st.integers(1, 6), st.integers(16, 24), st.data())
def test_one_hot_rows_are_recognised_and_nothing_else(n, width, data):
    ids = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, width - 1)))
    rows = onehot(ids, width)
    np.testing.assert_array_equal(blas.one_hot_rows(rows), ids)
    r, c = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, width - 1))
    spoiled = rows.copy()
    spoiled[r, c] = data.draw(st.sampled_from([2.0, 0.5, -1.0] + ([] if rows[r, c] else [1.0])))
    assert blas.one_hot_rows(spoiled) is None          # a second non-zero, or a 1 that is not 1


def test_narrow_rows_are_left_to_the_product():
    assert blas.one_hot_rows(np.eye(4)) is None


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_a_one_hot_run_equals_the_graph(cell, monkeypatch):
    from rnn.kernels import binding
    gathered = []
    monkeypatch.setattr(binding, "gather_rows", lambda idx, b: gathered.append(idx) or blas.gather_rows(idx, b))
    rng = np.random.default_rng(0)
    V, H, T, B = 20, 6, 7, 3
    make = {"elman": rnn.ElmanCell, "lstm": rnn.LSTMCell, "gru": rnn.GRUCell}[cell]
    net = make(V, H, rng=rng)
    ids = rng.integers(0, V, (T, B))
    ids[1:3, 0] = ids[0, 0]                            # a character repeated: its column gets a sum
    xs = onehot(ids, V)
    weights = rng.normal(size=(T, B, H))
    got = {}
    for backend in ("graph", "numba"):
        net.zero_grad()
        r = rnn.run(net, xs, backend=backend)
        (r.outputs * mg.tensor(weights)).sum().backward()
        got[backend] = [r.outputs.data] + [p.grad for p in net.parameters()]
    for g, n in zip(got["graph"], got["numba"]):
        np.testing.assert_allclose(n, g, rtol=1e-12, atol=1e-14)
    assert np.abs(net.weight_ih.grad[:, ids[0, 0]]).sum() > 0
    np.testing.assert_array_equal(gathered[-1], ids.reshape(-1))   # the kernels' run gathered


def test_one_hot_inputs_that_learn_get_their_gradient_by_the_product():
    rng = np.random.default_rng(1)
    net = rnn.ElmanCell(20, 5, rng=rng)
    xs = mg.tensor(onehot(rng.integers(0, 20, (4, 2)), 20), requires_grad=True)
    grads = []
    for backend in ("graph", "numba"):
        xs.grad = None
        rnn.run(net, xs, backend=backend).outputs.sum().backward()
        grads.append(xs.grad)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-14)
