"""Bidirectional nets and stacks of them on the kernels — one loop per direction and layer — against
the explicit graph: outputs, losses, final and per-step states, and every gradient."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.rolled import as_tuple
from tests.rnn_helpers import make_cell, random_state


class Fig1011(rnn.Bidirectional):
    """o(t) = c + V [h(t); g(t)], L(t) = cross-entropy: the network of Goodfellow et al. Fig. 10.11."""

    def __init__(self, fwd, bwd, K, rng):
        super().__init__(fwd, bwd)
        self.V = Parameter(rng.normal(0, 0.5, (K, fwd.hidden_size + bwd.hidden_size)))
        self.c = Parameter(rng.normal(0, 0.2, K))

    def output(self, state):
        return super().output(state) @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


def build(shape, kinds, I, H, K, rng):
    cells = [make_cell(k, I, H, seed=int(rng.integers(1 << 16))) for k in kinds]
    if shape == "bidirectional":
        return rnn.Bidirectional(cells[0], cells[1]), None
    if shape == "fig1011":
        return Fig1011(cells[0], cells[1], K, rng), "nll"
    layer2 = [make_cell(k, 2 * H, H, seed=int(rng.integers(1 << 16))) for k in kinds]
    return rnn.Stacked([rnn.Bidirectional(cells[0], cells[1]), rnn.Bidirectional(*layer2)]), None


def run(cell, xs, state0, ys, backend):
    for p in cell.parameters():
        p.grad = None
    xt = mg.Tensor(xs, requires_grad=True)
    s0 = tuple(mg.Tensor(s.data, requires_grad=True) for s in as_tuple(state0))
    r = rnn.run(cell, xt, s0, targets=ys, backend=backend)
    assert r.backend == backend
    if ys is None:
        loss = (r.outputs * mg.Tensor(np.linspace(-1, 1, r.outputs.size).reshape(r.outputs.shape))).sum()
        loss = loss + sum((s * 0.5).sum() for s in as_tuple(r.state))
    else:
        loss = r.loss
    loss.backward()
    T = xs.shape[0]
    return ([r.outputs.data, xt.grad] + [s.grad for s in s0] + [s.data for s in as_tuple(r.state)]
            + [p.grad if p.grad is not None else np.zeros(p.shape) for p in cell.parameters()]
            + [s.grad if s.grad is not None else np.zeros(s.shape) for t in (0, T - 1) for s in r.states[t]]
            + ([r.losses.data] if ys is not None else []))


@settings(max_examples=20)
@given(shape=st.sampled_from(["bidirectional", "fig1011", "deep"]),
       kinds=st.sampled_from([("gru", "gru"), ("lstm", "elman"), ("elman", "lstm"), ("leaky", "gru")]),
       T=st.integers(1, 5), B=st.integers(1, 3), H=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_one_loop_per_direction_equals_the_graph(shape, kinds, T, B, H, seed):
    rng = np.random.default_rng(seed)
    cell, loss = build(shape, kinds, 3, H, 4, rng)
    xs = rng.standard_normal((T, B, 3))
    state0 = random_state(cell, B, rng)
    ys = rng.integers(0, 4, (T, B)) if loss else None
    want, got = run(cell, xs, state0, ys, "graph"), run(cell, xs, state0, ys, "numba")
    assert len(want) == len(got)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_the_unfolded_graph_of_a_bidirectional_kernel_run_holds_its_states():
    rng = np.random.default_rng(0)
    cell, _ = build("fig1011", ("gru", "gru"), 3, 4, 5, rng)
    xs, ys = rng.standard_normal((4, 2, 3)), rng.integers(0, 5, (4, 2))
    r = rnn.run(cell, xs, targets=ys, backend="numba")
    g = r.graph
    for t in range(4):
        for sid, s in zip(g.state_out[t], r.states[t]):
            assert g.tensors[sid] is s
    want = rnn.run(cell, xs, targets=ys, backend="graph")
    np.testing.assert_allclose(r.loss.item(), want.loss.item(), rtol=1e-12)


def test_auto_runs_the_notes_architectures_in_the_kernels_without_a_warning(recwarn):
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 2, 3))
    for cell in (build("deep", ("gru", "lstm"), 3, 4, 4, rng)[0], build("fig1011", ("lstm", "lstm"), 3, 4, 4, rng)[0]):
        ys = rng.integers(0, 4, (3, 2)) if isinstance(cell, Fig1011) else None
        assert rnn.run(cell, xs, targets=ys).backend == "numba"
    assert not [w for w in recwarn if "explicit graph" in str(w.message)]


def test_the_gradient_picture_of_a_kernel_run_is_the_graph_runs_picture():
    """What a learner sees does not depend on the backend: the DOT of Fig 10.11's gradient-coloured
    unfolding is the same text after a kernel run as after an explicit-graph run."""
    import viz
    rng = np.random.default_rng(0)
    cell, _ = build("fig1011", ("gru", "lstm"), 3, 4, 5, rng)
    xs, ys = rng.standard_normal((5, 2, 3)), rng.integers(0, 5, (5, 2))
    sources = []
    for backend in ("numba", "graph"):
        r = rnn.run(cell, xs, targets=ys, backend=backend)
        cell.zero_grad()
        r.loss.backward()
        sources.append(viz.draw_unrolled(r, grad=True).source)
    assert "‖∂L/∂h_b‖" in sources[0] and sources[0] == sources[1]
