"""Values the fused (batch, width) loops cannot hold — over a source axis, N memory slots, k heads, a
(B, 1) gate — compiled as nd values (rnn.kernels.nd), against the explicit graph: outputs, losses
and every gradient (parameters, xs, the context), float64 to 1e-10 and float32 to 1e-4."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.kernels import kernel_source
from rnn.kernels.binding import prepare
from rnn.rolled import Context

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def _params(rng, dtype, *shapes):
    return [Parameter((rng.standard_normal(s) / np.sqrt(s[-1])).astype(dtype)) for s in shapes]


class AttentionDecoder(rnn.Cell):
    """h(t) = tanh(U x(t) + W h(t−1) + C c(t) + b) with c(t) = Σ_s α(t, s) e(s), α(t, ·) the softmax
    over source positions of score(h(t−1), e(s)) + bias(s): Bahdanau et al.'s additive
    v·tanh(Wa h + Ua e) or the dot product h·e.  o(t) = V h(t) + d, softmax NLL.  The context is
    (E, bias): encoder outputs (S, B, H) and −1e9 at padded source positions, 0 elsewhere."""

    def __init__(self, I, H, A, K, dtype, rng, score="additive"):
        super().__init__(I, H, dtype)
        self.U, self.W, self.C, self.Wa, self.Ua, self.V = _params(rng, dtype, (H, I), (H, H), (H, H), (A, H),
                                                                   (A, H), (K, H))
        self.b, self.v, self.d = _params(rng, dtype, (1, H), (1, A), (1, K))
        self.score = score

    def step(self, x, h, context):
        E, bias = context
        if self.score == "dot":
            scores = (E * h).sum(axis=-1)                                            # (S, B)
        else:
            scores = ((h @ self.Wa.T + E @ self.Ua.T).tanh() * self.v.reshape(-1)).sum(axis=-1)
        a = mg.softmax(scores + bias, axis=0)                                        # over s
        c = (a.reshape(*a.shape, 1) * E).sum(axis=0)                                 # (B, H)
        return (x @ self.U.T + h @ self.W.T + c @ self.C.T + self.b).tanh()

    def output(self, h):
        return h @ self.V.T + self.d

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


class SlotMemory(rnn.Cell):
    """A memory of N slots of width W as the state (B, N·W), read and written softly at every step
    (the content addressing of Graves et al. 2014): key k = tanh(K x), weights w = softmax over the
    slots of M k, read r = Σ_n w_n M_n, erase e = sigmoid(Er x), add a = tanh(A x + R r),
    M' = M ⊙ (1 − w eᵀ) + w aᵀ."""

    def __init__(self, I, N, W, dtype, rng):
        super().__init__(I, N * W, dtype)
        self.N, self.Wd = N, W
        self.K, self.Er, self.A, self.R = _params(rng, dtype, (W, I), (W, I), (W, I), (W, W))

    def step(self, x, m):
        B = m.shape[0]
        M = m.reshape(B, self.N, self.Wd)
        k = (x @ self.K.T).tanh()
        w = mg.softmax((M * k.reshape(B, 1, self.Wd)).sum(axis=-1), axis=-1)       # (B, N)
        w3 = w.reshape(B, self.N, 1)
        r = (w3 * M).sum(axis=1)                                                      # (B, W)
        e = (x @ self.Er.T).sigmoid().reshape(B, 1, self.Wd)
        a = (x @ self.A.T + r @ self.R.T).tanh().reshape(B, 1, self.Wd)
        return (M * (1.0 - w3 * e) + w3 * a).reshape(B, self.N * self.Wd)


class Heads(rnn.Cell):
    """k heads of width W attending over one another: Q and K (B, k, W) from h(t−1), weights
    softmax(Q Kᵀ / √W) (B, k, k), z = weights Q reshaped to (B, k·W); h(t) = tanh(U x(t) + z) and the
    largest head's activity max over heads of Q added to every head."""

    def __init__(self, I, k, W, dtype, rng):
        super().__init__(I, k * W, dtype)
        self.k, self.Wd = k, W
        self.U, self.Wq, self.Wk = _params(rng, dtype, (k * W, I), (k * W, k * W), (k * W, k * W))

    def step(self, x, h):
        B = h.shape[0]
        q = (h @ self.Wq.T).reshape(B, self.k, self.Wd)
        kk = (h @ self.Wk.T).reshape(B, self.k, self.Wd)
        a = mg.softmax(q @ kk.transpose(0, 2, 1) * (1 / np.sqrt(self.Wd)), axis=-1)
        z = (a @ q + q.max(axis=1, keepdims=True)).reshape(B, self.k * self.Wd)
        return (x @ self.U.T + z).tanh()


class Gated(rnn.Cell):
    """h(t) = g ⊙ tanh(U x(t) + W h(t−1)) + (1 − g) ⊙ h(t−1) with one gate per sequence, g = sigmoid of
    x(t)'s first feature: (B, 1) values times (B, H) ones."""

    def __init__(self, I, H, dtype, rng):
        super().__init__(I, H, dtype)
        self.U, self.W = _params(rng, dtype, (H, I), (H, H))

    def step(self, x, h):
        g = x[:, :1].sigmoid()
        return g * (x @ self.U.T + h @ self.W.T).tanh() + (1.0 - g) * h


def both(cell, xs, backend, context=None, targets=None, weights=None):
    """Outputs, loss and the gradients of the parameters, xs and the context's tensors."""
    cell.zero_grad()
    x = mg.Tensor(xs, requires_grad=True)
    ctx = None if context is None else tuple(mg.Tensor(c, requires_grad=True) for c in context)
    with_ctx = {} if ctx is None else {"context": ctx}
    r = rnn.run(cell, x, targets=targets, backend=backend, **with_ctx)
    assert r.backend == backend and r.fallback is None
    loss = r.loss if targets is not None else (r.outputs * weights).sum()
    loss.backward()
    return ([r.outputs.data, np.asarray(loss.data), x.grad] + [p.grad for p in cell.parameters()]
            + ([] if ctx is None else [c.grad for c in ctx]))


def assert_same(cell, xs, dtype, **kw):
    for i, (want, got) in enumerate(zip(both(cell, xs, "graph", **kw), both(cell, xs, "numba", **kw))):
        if want is None:
            assert got is None, i
        else:
            np.testing.assert_allclose(got, want, **TOL[dtype], err_msg=f"value {i}")


dtypes = st.sampled_from([np.float64, np.float32])
# Each example with new sizes compiles a kernel pair of its own (7-15 s for these steps): few examples.
FEW = settings(max_examples=3)


@settings(max_examples=4)   # both scores, both dtypes
@given(T=st.integers(1, 5), B=st.integers(1, 3), S=st.integers(1, 5), H=st.integers(1, 5), A=st.integers(1, 4),
       score=st.sampled_from(["additive", "dot"]), dtype=dtypes, seed=st.integers(0, 2**16))
def test_an_attention_decoder_over_encoder_outputs_equals_the_graph(T, B, S, H, A, score, dtype, seed):
    rng = np.random.default_rng(seed)
    cell = AttentionDecoder(3, H, A, 4, dtype, rng, score)
    xs = rng.standard_normal((T, B, 3)).astype(dtype)
    E = rng.standard_normal((S, B, H)).astype(dtype)
    bias = np.zeros((S, B), dtype)
    bias[S - 1:, : B - 1] = -1e9 if S > 1 else 0          # the last source position padded in all but one
    ys = rng.integers(0, 4, (T, B))
    assert_same(cell, xs, dtype, context=(E, bias), targets=ys)


@FEW
@given(T=st.integers(1, 5), B=st.integers(1, 3), N=st.integers(1, 4), W=st.integers(1, 4), dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_a_memory_of_n_slots_read_and_written_softly_equals_the_graph(T, B, N, W, dtype, seed):
    rng = np.random.default_rng(seed)
    cell = SlotMemory(3, N, W, dtype, rng)
    xs = rng.standard_normal((T, B, 3)).astype(dtype)
    assert_same(cell, xs, dtype, weights=rng.standard_normal((T, B, N * W)).astype(dtype))


@FEW
@given(T=st.integers(1, 5), B=st.integers(1, 3), k=st.integers(1, 3), W=st.integers(1, 4), dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_heads_with_batched_products_transposes_and_a_max_equal_the_graph(T, B, k, W, dtype, seed):
    rng = np.random.default_rng(seed)
    cell = Heads(3, k, W, dtype, rng)
    xs = rng.standard_normal((T, B, 3)).astype(dtype)
    assert_same(cell, xs, dtype, weights=rng.standard_normal((T, B, k * W)).astype(dtype))


@FEW
@given(T=st.integers(1, 5), B=st.integers(1, 3), H=st.integers(1, 5), dtype=dtypes, seed=st.integers(0, 2**16))
def test_a_gate_of_one_number_per_sequence_equals_the_graph(T, B, H, dtype, seed):
    rng = np.random.default_rng(seed)
    cell = Gated(2, H, dtype, rng)
    xs = rng.standard_normal((T, B, 2)).astype(dtype)
    assert_same(cell, xs, dtype, weights=rng.standard_normal((T, B, H)).astype(dtype))


def test_nd_values_are_classified_and_sizes_stay_out_of_the_source():
    """The attention's scores, weights and context are nd values; one source serves every source
    length and batch (sizes are read off the arrays), so a new length compiles nothing."""
    rng = np.random.default_rng(0)

    def source(S, H, B):
        cell = AttentionDecoder(3, H, 4, 5, np.float64, rng)
        return kernel_source(cell, B, context=(np.zeros((S, B, H)), np.zeros((S, B))))

    assert source(4, 3, 2) == source(7, 3, 3)
    cell = AttentionDecoder(3, 3, 4, 5, np.float64, rng)
    plan = prepare(cell, 2, context=Context(((4, 2, 3), (4, 2)), ("float64", "float64"), False)).plan
    shapes = {n.shape for n in plan.nodes.values() if n.kind == "nd"}
    assert {(4, 2, 4), (4, 2), (1, 2), (4, 2, 1), (4, 2, 3), (2, 3)} <= shapes
    assert not any(n.kind == "nd" for n in prepare(rnn.LSTMCell(3, 4), 2).plan.nodes.values())


def test_nd_kernels_run_as_plain_python_too(monkeypatch):
    """The loop nests run as plain Python (what NUMBA_DISABLE_JIT and coverage see), equal to the jitted."""
    rng = np.random.default_rng(1)
    cell = Gated(2, 3, np.float64, rng)
    xs, weights = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 3))
    jitted = both(cell, xs, "numba", weights=weights)
    mod = prepare(cell, 2).module
    for name in ("forward", "backward", "forward_rows", "backward_rows"):
        monkeypatch.setattr(mod, name, getattr(mod, name).py_func)
    for a, b in zip(jitted, both(cell, xs, "numba", weights=weights)):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_in_a_max_over_slots_share_the_gradient_as_the_engine_does(dtype):
    class TiedMax(rnn.Cell):
        def __init__(self):
            super().__init__(2, 4, dtype)
            self.U = Parameter(np.ones((4, 2), dtype))

        def step(self, x, h):   # relu makes ties (zeros) common; the max over the 2 halves of each row
            B = h.shape[0]
            z = (x @ self.U.T + h).relu().reshape(B, 2, 2).max(axis=1)
            return mg.concatenate([z, z], axis=-1) * 0.5

    xs = np.array([[[1.0, -1.0], [-2.0, -3.0]], [[0.5, 0.5], [0.0, 0.0]]], dtype)
    assert_same(TiedMax(), xs, dtype, weights=np.ones((2, 2, 4), dtype))
