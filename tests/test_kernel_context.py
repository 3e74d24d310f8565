"""What a step reads besides x(t) and its state, on the kernels, against the explicit graph: a (B, C)
context (outputs, the context's gradient summed over every step that read it, the weights'), the
step index t, and constants — float64 to 1e-10, float32 to 1e-4."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter


class Conditioned(rnn.Cell):
    """h(t) = tanh(U x(t) + W h(t−1) + R c + b) ⊙ gate, the gate sigmoid(R c) or sigmoid(c) itself
    (a context as wide as the state, read element-wise)."""

    def __init__(self, I, H, C, elementwise, dtype, rng):
        super().__init__(I, H, dtype)
        self.U, self.W, self.R = (Parameter(rng.normal(0, 0.4, s).astype(dtype)) for s in [(H, I), (H, H), (H, C)])
        self.b = Parameter(rng.normal(0, 0.1, H).astype(dtype))
        self.elementwise = elementwise

    def step(self, x, h, context):
        gate = (context if self.elementwise else context @ self.R.T).sigmoid()
        return (x @ self.U.T + h @ self.W.T + context @ self.R.T + self.b).tanh() * gate


def run(cell, xs, c, backend):
    cell.zero_grad()
    ctx = mg.Tensor(c, requires_grad=True)
    r = rnn.run(cell, xs, context=ctx, backend=backend)
    assert r.backend == backend
    (r.outputs * r.outputs).sum().backward()
    return [r.outputs.data, ctx.grad] + [p.grad for p in cell.parameters()]


@settings(max_examples=20)
@given(T=st.integers(1, 6), B=st.integers(1, 4), H=st.integers(1, 6), C=st.integers(1, 5),
       elementwise=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_a_vector_context_in_the_kernels_equals_the_graph(T, B, H, C, elementwise, dtype, seed):
    rng = np.random.default_rng(seed)
    C = H if elementwise else C
    cell = Conditioned(3, H, C, elementwise, dtype, rng)
    xs = rng.standard_normal((T, B, 3)).astype(dtype)
    c = rng.standard_normal((B, C)).astype(dtype)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for want, got in zip(run(cell, xs, c, "graph"), run(cell, xs, c, "numba")):
        np.testing.assert_allclose(got, want, **tol)


def test_a_step_the_generator_cannot_compile_falls_back_with_the_op_named_and_one_warning():
    class LastSource(rnn.Cell):
        """Reads the last source position of a product over the source axis: an index into an axis
        other than the last, which the generator does not compile."""
        def __init__(self, I, H):
            super().__init__(I, H)
            self.W = Parameter(np.full((H, I + 2 * H), 0.1))

        def step(self, x, h, context):
            c = (context * h)[-1]                                         # (S, B, H) -> (B, H)
            return (mg.concatenate([x, h, c], axis=-1) @ self.W.T).tanh()

    cell, xs, E = LastSource(2, 3), np.ones((2, 1, 2)), mg.Tensor(np.ones((4, 1, 3)))
    with pytest.raises(rnn.kernels.UnsupportedCellError, match=r"op 'getitem' at node n\d+"):
        rnn.run(cell, xs, context=E, backend="numba")
    with pytest.warns(UserWarning, match=r"rnn.run\(LastSource\).*explicit graph.*op 'getitem'"):
        r = rnn.run(cell, xs, context=E)
    assert r.backend == "graph" and "'getitem'" in r.fallback
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn.run(cell, xs, context=E)      # said once per cell


@pytest.mark.parametrize("B", [1, 2])
def test_a_row_value_of_parameters_alone_gets_its_whole_gradient(B):
    """A (1, W) value the kernels read by column (c0 @ R.T with c0 a (1, C) parameter) had its gradient
    array laid out (1, W) but written as (W,): only row 0 existed, so columns past the first wrote out
    of bounds and the gradient came out wrong without a word."""
    class RowBias(rnn.Cell):
        def __init__(self, I, H, C, rng):
            super().__init__(I, H)
            self.U, self.W, self.R = (Parameter(rng.normal(0, 0.4, s)) for s in [(H, I), (H, H), (H, C)])
            self.c0 = Parameter(rng.normal(0, 1, (1, C)))

        def step(self, x, h):
            return (x @ self.U.T + h @ self.W.T + self.c0 @ self.R.T).tanh() * (self.c0 @ self.R.T).sigmoid()

    rng = np.random.default_rng(0)
    cell, xs = RowBias(3, 4, 2, rng), rng.standard_normal((3, B, 3))
    grads = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        r = rnn.run(cell, xs, backend=backend)
        (r.outputs * r.outputs).sum().backward()
        grads.append([p.grad.copy() for p in cell.parameters()])
    for want, got in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_product_by_a_constant_runs_in_the_kernels_with_the_constant_passed_per_call():
    class Fixed(rnn.Cell):
        """h(t) = tanh(h(t−1) M + x(t) N + b), M and N constants of the step (an echo state net's way)."""

        def __init__(self, M, N):
            super().__init__(N.shape[0], M.shape[0])
            self.M, self.N = M, N
            self.b = Parameter(np.full(M.shape[0], 0.1))

        def step(self, x, h):
            return (h @ mg.Tensor(self.M) + x @ mg.Tensor(self.N) + self.b).tanh()

    rng = np.random.default_rng(4)
    cells = [Fixed(rng.normal(0, 0.4, (4, 4)), rng.normal(0, 0.4, (3, 4))) for _ in range(2)]
    assert rnn.kernel_source(cells[0]) == rnn.kernel_source(cells[1])   # the numbers are inputs, not source
    xs = rng.standard_normal((5, 2, 3))
    for cell in cells:
        got = []
        for backend in ("graph", "numba"):
            cell.zero_grad()
            xt = mg.Tensor(xs, requires_grad=True)
            r = rnn.run(cell, xt, backend=backend)
            (r.outputs * r.outputs).sum().backward()
            got.append([r.outputs.data, cell.b.grad.copy(), xt.grad])
        for want, have in zip(*got):
            np.testing.assert_allclose(have, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("per_step", [False, True])
def test_an_output_that_reads_the_context_too(per_step):
    """o(t) = V h(t) + Σ c: run over all steps at once; with argmax_onehot (no rule over time), step by step."""
    class Read(rnn.Cell):
        def __init__(self):
            super().__init__(3, 4)
            rng = np.random.default_rng(0)
            self.W, self.V = Parameter(rng.normal(0, 0.4, (4, 7))), Parameter(rng.normal(0, 0.4, (5, 4)))

        def step(self, x, h, context):
            return (mg.concatenate([x, h], axis=-1) @ self.W.T).tanh() * context

        def output(self, h, context):
            if per_step:
                return (h @ self.V.T) * mg.argmax_onehot(context @ self.V.T) + 1.0
            return h @ self.V.T + context.sum(axis=-1, keepdims=True)

    rng = np.random.default_rng(1)
    cell, xs, c = Read(), rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 4))
    got = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        ct = mg.Tensor(c, requires_grad=True)
        r = rnn.run(cell, xs, context=ct, backend=backend)
        (r.outputs * r.outputs).sum().backward()
        got.append([r.outputs.data, ct.grad, cell.W.grad.copy(), cell.V.grad.copy()])
    for want, have in zip(*got):
        np.testing.assert_allclose(have, want, rtol=1e-10, atol=1e-12)


class Clockwork(rnn.Cell):
    """Two time scales (the notes' §10.9.2, a clockwork RNN): the second half of the units updates only
    at even steps, and every unit leaks by t/100: a step that reads the step index t."""

    def __init__(self, I, H, dtype, rng, masked=False):
        super().__init__(I, H, dtype)
        self.W = Parameter(rng.normal(0, 0.4, (H, I + H)).astype(dtype))
        self.masked = masked
        if masked:  # the slow half as a (H,) mask, with a learned per-unit rate: a (H,) vector made from t
            self.rate = Parameter(rng.uniform(0.2, 0.8, H).astype(dtype))
            self.mask = np.r_[np.zeros(H // 2), np.ones(H - H // 2)].astype(dtype)

    def step(self, x, h, t):
        new = (mg.concatenate([x, h], axis=-1) @ self.W.T).tanh()
        odd = mg.mod(t, 2.0)
        if self.masked:
            slow = odd * mg.Tensor(self.mask) * self.rate
            return new * (1 - slow) + h * slow
        k = self.hidden_size // 2
        return mg.concatenate([new[:, :k], new[:, k:] * (1 - odd) + h[:, k:] * odd], axis=-1) + h * (t * 0.01)


@settings(max_examples=15)
@given(T=st.integers(1, 6), B=st.integers(1, 3), k=st.integers(1, 3), dtype=st.sampled_from([np.float64, np.float32]),
       masked=st.booleans(), seed=st.integers(0, 2**16))
def test_a_step_that_reads_t_runs_in_the_kernels_as_on_the_graph(T, B, k, dtype, masked, seed):
    rng = np.random.default_rng(seed)
    cell = Clockwork(2, 2 * k, dtype, rng, masked)
    xs = rng.standard_normal((T, B, 2)).astype(dtype)
    got = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        xt = mg.Tensor(xs, requires_grad=True)
        r = rnn.run(cell, xt, backend=backend)
        assert r.backend == backend
        (r.outputs * r.outputs).sum().backward()
        got.append([r.outputs.data, xt.grad] + [p.grad.copy() for p in cell.parameters()])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for want, have in zip(*got):
        np.testing.assert_allclose(have, want, **tol)


def test_vector_to_sequence_without_inputs_runs_in_the_kernels():
    """Fig 10.9: no x(t), a context read at every step — the kernels see a step input of width 0."""
    from tests.test_rnn_reads import Conditioned as ReadsContext
    rng = np.random.default_rng(1)
    cell = ReadsContext(0, 3, 4, rng)
    c, h0 = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
    got = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        ct = mg.Tensor(c, requires_grad=True)
        r = rnn.run(cell, None, mg.Tensor(h0), steps=6, batch=2, context=ct, backend=backend)
        assert r.backend == backend and r.graph.x == [None] * 6
        (r.outputs * r.outputs).sum().backward()
        got.append([r.outputs.data, ct.grad] + [p.grad.copy() for p in cell.parameters() if p.grad is not None])
    assert len(got[0]) == len(got[1]) > 2
    for want, have in zip(*got):
        np.testing.assert_allclose(have, want, rtol=1e-10, atol=1e-12)
