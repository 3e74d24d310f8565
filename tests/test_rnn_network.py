"""A whole network in the rolled graph (Goodfellow et al. Fig. 10.3): x -U-> h -V-> o -> L <- y, h -W-> h.

The network against a plain NumPy loop of its equations and their BPTT (the
chapter's eq. 10.6 and the book's 10.8–10.11, 10.18–10.22), with losses at
every step, at the last only and at a random mask, on both backends.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.run import Supervision, feeds_for


class Fig103(rnn.Cell):
    """a(t) = b + W h(t-1) + U x(t); h(t) = tanh(a(t)); o(t) = c + V h(t); L(t) = -log softmax(o(t))[y(t)]."""

    def __init__(self, I, H, K, rng):
        super().__init__(I, H)
        self.U = Parameter(rng.normal(0, 0.6, (H, I)))
        self.W = Parameter(rng.normal(0, 0.6, (H, H)))
        self.b = Parameter(rng.normal(0, 0.2, H))
        self.V = Parameter(rng.normal(0, 0.6, (K, H)))
        self.c = Parameter(rng.normal(0, 0.2, K))

    def step(self, x, h):
        return (self.b + h @ self.W.T + x @ self.U.T).tanh()

    def output(self, h):
        return h @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


def reference(net, xs, h0, ys, steps, reduction="sum"):
    """Forward and BPTT by hand, as the book writes them; cross_entropy averages over the batch."""
    U, W, b, V, c = (p.data for p in (net.U, net.W, net.b, net.V, net.c))
    T, B, _ = xs.shape
    K = V.shape[0]
    scale = 1.0 / len(steps) if reduction == "mean" else 1.0
    hs, os = [h0], []
    for t in range(T):
        hs.append(np.tanh(b + hs[-1] @ W.T + xs[t] @ U.T))
        os.append(c + hs[-1] @ V.T)
    losses = []
    g_o = [np.zeros((B, K)) for _ in range(T)]
    for t in steps:
        z = os[t] - os[t].max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        losses.append(-logp[np.arange(B), ys[t]].mean())
        g_o[t] = (np.exp(logp) - np.eye(K)[ys[t]]) / B * scale          # dL/do(t) = yhat - onehot, per example
    grads = {k: np.zeros_like(v) for k, v in (("U", U), ("W", W), ("b", b), ("V", V), ("c", c))}
    g_h_next, g_a = np.zeros((B, W.shape[0])), None
    for t in range(T - 1, -1, -1):
        g_h = g_o[t] @ V + (g_a @ W if g_a is not None else 0)          # Vᵀ dL/do(t) + Wᵀ diag(1-h²) dL/dh(t+1)
        g_a = g_h * (1 - hs[t + 1] ** 2)
        grads["V"] += g_o[t].T @ hs[t + 1]
        grads["c"] += g_o[t].sum(0)
        grads["b"] += g_a.sum(0)
        grads["W"] += g_a.T @ hs[t]
        grads["U"] += g_a.T @ xs[t]
    grads["h0"] = g_a @ W
    total = sum(losses) * scale
    return np.stack(os), np.array(losses), total, grads


def _steps(kind, T, rng):
    if kind == "every":
        return None, list(range(T))
    if kind == "last":
        return [-1], [T - 1]
    mask = rng.random(T) < 0.5
    mask[rng.integers(T)] = True
    return mask, np.flatnonzero(mask).tolist()


@pytest.mark.parametrize("backend", ["graph", "numba"])
@pytest.mark.parametrize("where", ["every", "last", "mask"])
@settings(max_examples=8)
@given(T=st.integers(1, 6), B=st.integers(1, 4), I=st.integers(1, 3), H=st.integers(1, 4), K=st.integers(2, 4),
       seed=st.integers(0, 2**16), mean=st.booleans())
def test_the_network_equals_its_equations_and_their_bptt(backend, where, T, B, I, H, K, seed, mean):
    rng = np.random.default_rng(seed)
    net = Fig103(I, H, K, rng)
    xs = rng.normal(size=(T, B, I))
    ys = rng.integers(0, K, size=(T, B))
    h0 = mg.tensor(rng.normal(size=(B, H)) * 0.5, requires_grad=True)
    loss_steps, steps = _steps(where, T, rng)
    reduction = "mean" if mean else "sum"

    res = rnn.run(net, xs, h0, targets=ys, loss_steps=loss_steps, reduction=reduction, backend=backend)
    assert res.backend == backend and res.loss_steps == steps and res.reduction == reduction
    res.loss.backward()
    want_o, want_losses, want_total, want = reference(net, xs, h0.data, ys, steps, reduction)
    np.testing.assert_allclose(res.outputs.data, want_o, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.losses.data, want_losses, rtol=1e-10, atol=1e-12)
    assert res.loss.shape == () and abs(res.loss.item() - want_total) <= 1e-10 * max(1.0, abs(want_total))
    for name in ("U", "W", "b", "V", "c"):
        np.testing.assert_allclose(getattr(net, name).grad, want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(h0.grad, want["h0"], rtol=1e-10, atol=1e-12)


def test_the_rolled_graph_holds_the_whole_network():
    net = Fig103(3, 4, 5, np.random.default_rng(0))
    g = net.rolled(batch=2, targets=rnn.Targets((2,), "int64"))
    roles = {g.nodes[i].role for i in (g.x, g.output, g.target, g.loss)}
    assert roles == {"input", "output", "target", "loss"}
    assert g.nodes[g.output].shape == (2, 5) and g.nodes[g.loss].shape == ()
    assert g.nodes[g.target].dtype == "int64" and g.nodes[g.target].op == "leaf"
    assert sorted(g.params.values()) == ["U", "V", "W", "b", "c"]
    # the target is an input of the graph: it reaches L(t) through pick's argument, not a frozen index
    assert any(e.src == g.target and g.nodes[e.dst].op == "pick" for e in g.edges)


def test_one_rolled_graph_serves_batches_with_different_targets():
    rng = np.random.default_rng(3)
    net = Fig103(2, 3, 4, rng)
    T, B = 4, 3
    graph = rnn.unfold(net.rolled(B, targets=rnn.Targets((B,), "int64")), T)
    xs, h0 = mg.tensor(rng.normal(size=(T, B, 2))), mg.tensor(np.zeros((B, 3)))
    for ys in (rng.integers(0, 4, (T, B)), rng.integers(0, 4, (T, B))):
        sup = Supervision(mg.tensor(ys), list(range(T)), None)
        values = graph.evaluate(feeds_for(graph, net, xs, h0, sup))
        got = sum(values[i].item() for i in graph.losses.values())
        assert abs(got - reference(net, xs.data, h0.data, ys, list(range(T)))[2]) < 1e-12


def test_values_as_targets_and_a_loss_that_is_not_cross_entropy():
    class Regress(Fig103):
        def loss(self, o, y):
            return mg.mse_loss(o, y)

    rng = np.random.default_rng(1)
    net = Regress(2, 3, 2, rng)
    xs, ys = rng.normal(size=(5, 2, 2)), rng.normal(size=(5, 2, 2))
    runs = [rnn.run(net, xs, targets=ys, backend=b) for b in ("graph", "numba")]
    want = [np.mean((o - y) ** 2) for o, y in zip(runs[0].outputs.data, ys)]
    for r in runs:
        np.testing.assert_allclose(r.losses.data, want, rtol=1e-12)


def test_without_targets_there_is_no_loss_and_outputs_are_o():
    net = Fig103(2, 3, 4, np.random.default_rng(0))
    res = rnn.run(net, np.ones((3, 1, 2)))
    assert res.loss is None and res.losses is None and res.loss_steps == []
    assert res.outputs.shape == (3, 1, 4)
    assert res.graph.rolled.loss is None and not res.graph.loss_steps


def test_batch_first_targets():
    rng = np.random.default_rng(2)
    net = Fig103(2, 3, 4, rng)
    xs, ys = rng.normal(size=(5, 2, 2)), rng.integers(0, 4, (5, 2))
    a = rnn.run(net, xs, targets=ys)
    b = rnn.run(net, xs.transpose(1, 0, 2), targets=ys.T, batch_first=True)
    assert b.outputs.shape == (2, 5, 4)
    np.testing.assert_allclose(a.loss.item(), b.loss.item(), rtol=1e-14)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(targets=np.zeros((5, 3), dtype=int)), mg.ShapeError, ["targets", "(5, 3)", "(5, 2)"]),
    (dict(targets=np.zeros(5, dtype=int)), mg.ShapeError, ["targets", "(T, B"]),
    (dict(targets=np.full((5, 2), 4)), ValueError, ["pick", "[0, 4)"]),
    (dict(targets=np.zeros((5, 2), dtype=int), loss_steps=[5]), ValueError, ["loss_steps", "[5]"]),
    (dict(targets=np.zeros((5, 2), dtype=int), loss_steps=np.zeros(4, bool)), mg.ShapeError, ["mask", "(5,)"]),
    (dict(targets=np.zeros((5, 2), dtype=int), loss_steps=np.zeros(5, bool)), ValueError, ["no step"]),
    (dict(targets=np.zeros((5, 2), dtype=int), reduction="max"), ValueError, ["reduction", "'max'"]),
    (dict(loss_steps=[0]), ValueError, ["loss_steps", "without targets"]),
    (dict(targets="abc"), TypeError, ["targets"]),
])
def test_bad_targets_are_clear_errors(kwargs, error, words):
    net = Fig103(2, 3, 4, np.random.default_rng(0))
    with pytest.raises(error) as info:
        rnn.run(net, np.ones((5, 2, 2)), backend="graph", **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_targets_for_a_cell_without_a_loss_are_refused():
    with pytest.raises(TypeError, match="defines no loss"):
        rnn.run(rnn.ElmanCell(2, 3), np.ones((3, 1, 2)), targets=np.zeros((3, 1), dtype=int))


def test_the_softmax_family_traces_inside_a_step():
    class SoftState(rnn.Cell):
        def __init__(self):
            super().__init__(2, 3)
            self.W = Parameter(np.random.default_rng(0).normal(size=(3, 5)))

        def step(self, x, h):
            z = mg.concatenate([x, h], axis=1) @ self.W.T
            return mg.softmax(z, axis=-1) + mg.log_softmax(z, axis=-1) * 0.1 + mg.logsumexp(z, axis=-1, keepdims=True) * 0.01

    cell = SoftState()
    xs = mg.tensor(np.random.default_rng(1).normal(size=(4, 2, 2)), requires_grad=True)
    res = rnn.run(cell, xs)   # no "depends on the values" error: the max shift is a recorded stop_gradient
    h = mg.zeros(2, 3)
    for x in xs.data:
        z = mg.concatenate([mg.tensor(x), h], axis=1) @ cell.W.T
        h = mg.softmax(z, axis=-1) + mg.log_softmax(z, axis=-1) * 0.1 + mg.logsumexp(z, axis=-1, keepdims=True) * 0.01
    np.testing.assert_allclose(res.state.data, h.data, rtol=1e-12)
    assert mg.gradcheck(lambda xs: rnn.run(cell, xs).outputs, [xs])
