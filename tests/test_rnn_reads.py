"""What a step reads besides x(t) and its state: a context, the step index, longer delays, no input at all.

Goodfellow et al. §10.2.4 (vector-to-sequence), §10.4 (encoder–decoder, attention over the encoder's
states), §10.9 (skip connections through time, multiple time scales).
"""
import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad.graph import CycleError
from minigrad.nn import Parameter


class Conditioned(rnn.Cell):
    """h(t) = tanh(W h(t-1) + U x(t) + R c): the conditional RNN of Fig. 10.10, c read at every step."""

    def __init__(self, I, H, C, rng):
        super().__init__(I, H)
        self.W, self.U, self.R = (Parameter(rng.normal(0, 0.5, s)) for s in ((H, H), (H, I), (H, C)))

    def step(self, x, h, context):
        a = h @ self.W.T + context @ self.R.T
        return (a if x is None else a + x @ self.U.T).tanh()


def conditioned_by_hand(cell, xs, h, c, T):
    W, U, R = cell.W.data, cell.U.data, cell.R.data
    out = []
    for t in range(T):
        a = h @ W.T + c @ R.T + (0 if xs is None else xs[t] @ U.T)
        h = np.tanh(a)
        out.append(h)
    return np.stack(out)


def test_a_context_is_read_every_step_and_gets_its_gradient():
    rng = np.random.default_rng(0)
    cell = Conditioned(2, 3, 4, rng)
    xs = mg.tensor(rng.normal(size=(5, 2, 2)), requires_grad=True)
    c = mg.tensor(rng.normal(size=(2, 4)), requires_grad=True)
    res = rnn.run(cell, xs, context=c)
    np.testing.assert_allclose(res.outputs.data, conditioned_by_hand(cell, xs.data, np.zeros((2, 3)), c.data, 5),
                               rtol=1e-12)
    assert res.backend == "numba" and res.fallback is None                # a (B, C) context runs in the kernels
    g = res.graph
    assert g.context == g.rolled.context and len(g.context) == 1          # one node, shared by every step
    assert {g.step_of[e.dst] for e in g.edges if e.src == g.context[0]} == set(range(5))
    res.outputs.sum().backward()
    assert c.grad is not None and c.grad.shape == (2, 4)
    assert mg.gradcheck(lambda c, xs: rnn.run(cell, xs, context=c).outputs, [c, xs])


def test_vector_to_sequence_runs_without_inputs():
    rng = np.random.default_rng(1)
    cell = Conditioned(0, 3, 4, rng)
    c = mg.tensor(rng.normal(size=(2, 4)), requires_grad=True)
    h0 = mg.tensor(rng.normal(size=(2, 3)))
    res = rnn.run(cell, None, h0, steps=6, batch=2, context=c)
    np.testing.assert_allclose(res.outputs.data, conditioned_by_hand(cell, None, h0.data, c.data, 6), rtol=1e-12)
    assert res.graph.x == [None] * 6 and res.graph.rolled.x is None
    assert mg.gradcheck(lambda c: rnn.run(cell, None, h0, steps=6, batch=2, context=c).outputs, [c])


class Attention(rnn.Cell):
    """A decoder step with additive attention (Bahdanau et al. 2015) over encoder states E (S, B, H):
    e_s = v·tanh(Wa h + Ua E_s), a = softmax(e), ctx = Σ_s a_s E_s, h' = tanh(W h + U x + C ctx)."""

    def __init__(self, I, H, rng):
        super().__init__(I, H)
        n = lambda *s: Parameter(rng.normal(0, 0.4, s))  # noqa: E731
        self.Wa, self.Ua, self.v, self.W, self.U, self.C = n(H, H), n(H, H), n(H), n(H, H), n(H, I), n(H, H)

    def step(self, x, h, context):
        E = context                                               # (S, B, H)
        scores = ((h @ self.Wa.T + E @ self.Ua.T).tanh() * self.v).sum(axis=-1)   # (S, B)
        a = mg.softmax(scores, axis=0)
        ctx = (a.reshape(*a.shape, 1) * E).sum(axis=0)            # (B, H)
        return (h @ self.W.T + x @ self.U.T + ctx @ self.C.T).tanh()


def attention_by_hand(cell, xs, E):
    p = {k: getattr(cell, k).data for k in ("Wa", "Ua", "v", "W", "U", "C")}
    h, out = np.zeros((xs.shape[1], cell.hidden_size)), []
    for x in xs:
        s = (np.tanh(h @ p["Wa"].T + E @ p["Ua"].T) * p["v"]).sum(-1)
        a = np.exp(s - s.max(0)) / np.exp(s - s.max(0)).sum(0)
        h = np.tanh(h @ p["W"].T + x @ p["U"].T + (a[..., None] * E).sum(0) @ p["C"].T)
        out.append(h)
    return np.stack(out)


def test_an_attention_decoder_over_encoder_outputs_is_a_cell():
    rng = np.random.default_rng(2)
    cell = Attention(2, 3, rng)
    E = mg.tensor(rng.normal(size=(4, 2, 3)), requires_grad=True)   # (T_enc, B, H): a valid context
    xs = rng.normal(size=(3, 2, 2))
    res = rnn.run(cell, xs, context=E)
    np.testing.assert_allclose(res.outputs.data, attention_by_hand(cell, xs, E.data), rtol=1e-12)
    assert mg.gradcheck(lambda E: rnn.run(cell, xs, context=E).outputs, [E])


@pytest.mark.slow
def test_an_attention_decoder_learns_to_copy_its_source():
    """Copy: the encoder states are one-hot source symbols; the decoder, reading only its position and
    the attention over the source, must emit the source symbol at each step."""
    rng = np.random.default_rng(3)
    S, K, B = 5, 4, 32

    class Copier(Attention):
        def output(self, h):
            return h @ self.V.T

        def loss(self, o, y):
            return mg.cross_entropy(o, y)

    cell = Copier(S, 12, rng)
    cell.Ua = Parameter(rng.normal(0, 0.4, (12, K + S)))
    cell.C = Parameter(rng.normal(0, 0.4, (12, K + S)))
    cell.V = Parameter(rng.normal(0, 0.4, (K, 12)))
    opt = mg.optim.Adam(cell.parameters(), lr=0.05)

    def batch(n):
        src = rng.integers(0, K, (S, n))
        E = np.concatenate([np.eye(K)[src], np.broadcast_to(np.eye(S)[:, None], (S, n, S))], axis=-1)
        return np.broadcast_to(np.eye(S)[:, None], (S, n, S)).copy(), E, src   # x(t): the position t

    for _ in range(250):
        xs, E, src = batch(B)
        res = rnn.run(cell, xs, context=mg.tensor(E), targets=src, reduction="mean")
        opt.zero_grad()
        res.loss.backward()
        opt.step()
    xs, E, src = batch(200)
    with mg.no_grad():
        out = rnn.run(cell, xs, context=mg.tensor(E)).outputs.data
    assert np.mean(out.argmax(-1) == src) > 0.95


class TwoClocks(rnn.Cell):
    """Half the units update every step, half every other step (t even): multiple time scales (§10.9)."""

    def __init__(self, I, H, rng):
        super().__init__(I, H)
        self.W, self.U = Parameter(rng.normal(0, 0.5, (H, H))), Parameter(rng.normal(0, 0.5, (H, I)))
        self.period = np.array([1.0] * (H // 2) + [2.0] * (H - H // 2))

    def step(self, x, h, t):
        on = mg.equal(t % self.period, 0.0)                      # 1 where a unit's clock ticks at step t
        return on * (h @ self.W.T + x @ self.U.T).tanh() + (1 - on) * h


def test_the_step_index_reaches_the_step():
    rng = np.random.default_rng(4)
    cell = TwoClocks(2, 4, rng)
    xs = mg.tensor(rng.normal(size=(5, 1, 2)), requires_grad=True)
    res = rnn.run(cell, xs)
    h, W, U = np.zeros((1, 4)), cell.W.data, cell.U.data
    for t in range(5):
        on = (t % cell.period == 0) * 1.0
        h = on * np.tanh(h @ W.T + xs.data[t] @ U.T) + (1 - on) * h
        np.testing.assert_allclose(res.states[t][0].data, h, rtol=1e-12)
    slow = res.outputs.data[:, 0, 2:]
    assert (slow[1] == slow[0]).all() and (slow[3] == slow[2]).all() and not (slow[2] == slow[1]).all()
    assert [res.graph.nodes[i].role for i in res.graph.step_ids] == ["step"] * 5
    assert mg.gradcheck(lambda xs: rnn.run(cell, xs).outputs, [xs])


class Skip(rnn.Cell):
    """h(t) = tanh(W h(t-2) + U x(t)): a skip connection through time of delay 2 (§10.9.1)."""
    delays = {"h": 2}

    def __init__(self, I, H, rng):
        super().__init__(I, H)
        self.W, self.U = Parameter(rng.normal(0, 0.5, (H, H))), Parameter(rng.normal(0, 0.5, (H, I)))

    def step(self, x, h):
        return (h @ self.W.T + x @ self.U.T).tanh()


def test_a_delay_of_two_joins_t_minus_2_to_t():
    rng = np.random.default_rng(5)
    cell = Skip(2, 3, rng)
    xs = mg.tensor(rng.normal(size=(6, 2, 2)), requires_grad=True)
    h0 = mg.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    res = rnn.run(cell, xs, h0)
    assert res.backend == "graph" and res.graph.rolled.loops[0].delay == 2
    hs = {-2: h0.data, -1: h0.data}      # before the start, the initial state
    for t in range(6):
        hs[t] = np.tanh(hs[t - 2] @ cell.W.data.T + xs.data[t] @ cell.U.data.T)
        np.testing.assert_allclose(res.outputs.data[t], hs[t], rtol=1e-12)
    g, lp = res.graph, res.graph.rolled.loops[0]
    readers = [e.dst for e in g.rolled.edges if e.src == lp.input]
    for t in range(2, 6):
        assert all(g.node_at(lp.output, t - 2) in g.inputs_of(g.node_at(r, t)) for r in readers)
    for t in (0, 1):
        assert all(g.state0[0] in g.inputs_of(g.node_at(r, t)) for r in readers)
    assert mg.gradcheck(lambda xs, h0: rnn.run(cell, xs, h0).outputs, [xs, h0])


def test_a_cycle_with_no_delay_is_refused_naming_its_nodes():
    class Instant(Skip):
        delays = {"h": 0}

    with pytest.raises(CycleError, match=r"cycle n\d+ \(h\) -> .*matmul.* -> \(delay 0\).*total delay of 0 steps.*delays\['h'\]"):
        Instant(2, 3, np.random.default_rng(0)).rolled()


@pytest.mark.parametrize("delays, error", [({"c": 2}, ValueError), ({"h": 1.5}, TypeError)])
def test_delays_must_name_states_and_be_integers(delays, error):
    cls = type("Bad", (Skip,), {"delays": delays})
    with pytest.raises(error, match="delays"):
        cls(2, 3, np.random.default_rng(0)).rolled()


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(), TypeError, ["reads a context", "context="]),
    (dict(context=np.ones((2, 4)), y0=np.ones((2, 3))), TypeError, ["y0", "reads no y_prev"]),
])
def test_what_a_step_reads_must_be_given(kwargs, error, words):
    cell = Conditioned(2, 3, 4, np.random.default_rng(0))
    with pytest.raises(error) as info:
        rnn.run(cell, np.ones((3, 2, 2)), **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_context_for_a_step_that_reads_none_is_refused():
    with pytest.raises(TypeError, match="reads none"):
        rnn.run(rnn.ElmanCell(2, 3), np.ones((3, 1, 2)), context=np.ones((1, 2)), backend="graph")
