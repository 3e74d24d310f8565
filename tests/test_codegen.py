"""The numba backend against the explicit unfolded DAG, for built-in and custom cells.

Kernels compile once per (cell class, dtype) and are shared by every example:
the generated source does not depend on sizes, so hypothesis can vary T, B, I, H freely.
"""
import copy
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad import Tensor
from rnn.cell import Cell
from rnn import kernel_source
from rnn.kernels.binding import prepare
from rnn.kernels.ir import UnsupportedCellError
from rnn.rolled import as_tuple

pytestmark = pytest.mark.slow  # compiles kernels


class LeakyCell(Cell):
    """Leaky units: h' = (1 - a) h + a tanh(x W + h U + b), a a constant (Goodfellow §10.9.2)."""

    def __init__(self, input_size, hidden_size, alpha=0.3, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self.W, self.U, self.b = self._init(rng, (input_size, hidden_size), (hidden_size, hidden_size), (hidden_size,))
        self.alpha = alpha

    def step(self, x, h):
        return (1 - self.alpha) * h + self.alpha * (x @ self.W + h @ self.U + self.b).tanh()


class MinimalGatedCell(Cell):
    """One gate f from [x, h]: h~ = tanh(W x + U (f h) + b), h' = (1 - f) h + f h~."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        I, H = input_size, hidden_size
        self.Wf, self.bf, self.W, self.U, self.b = self._init(rng, (H, I + H), (H,), (I, H), (H, H), (H,))

    def step(self, x, h):
        f = (mg.concatenate([x, h], axis=-1) @ self.Wf.T + self.bf).sigmoid()
        cand = (x @ self.W + (f * h) @ self.U + self.b).tanh()
        return (1 - f) * h + f * cand


class TextbookGRU(Cell):
    """Goodfellow eqs. 10.45-10.47: u, r gates; h~ = tanh(b + U x + W (r * h)); h' = u h + (1 - u) h~."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        I, H = input_size, hidden_size
        (self.Uu, self.Wu, self.bu, self.Ur, self.Wr, self.br,
         self.U, self.W, self.b) = self._init(rng, (I, H), (H, H), (H,), (I, H), (H, H), (H,), (I, H), (H, H), (H,))

    def step(self, x, h):
        u = (self.bu + x @ self.Uu + h @ self.Wu).sigmoid()
        r = (self.br + x @ self.Ur + h @ self.Wr).sigmoid()
        cand = (self.b + x @ self.U + (r * h) @ self.W).tanh()
        return u * h + (1 - u) * cand


class DeepTransitionCell(Cell):
    """A two-layer transition (Pascanu et al. 2014): h' = tanh(relu(x W + h U + b1) V + b2)."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        I, H = input_size, hidden_size
        self.W, self.U, self.b1, self.V, self.b2 = self._init(rng, (I, 2 * H), (H, 2 * H), (2 * H,), (2 * H, H), (H,))

    def step(self, x, h):
        z = (x @ self.W + h @ self.U + self.b1).relu()
        return (z @ self.V + self.b2).tanh()


class OddOpsCell(Cell):
    """exp, log, powers, division, neg and x read element-wise (needs input_size == hidden_size)."""
    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self.W, self.U, self.b = self._init(rng, (input_size, hidden_size), (hidden_size, hidden_size), (hidden_size,))

    def step(self, x, state):
        h, c = state
        a = x @ self.W + h @ self.U + self.b
        soft = (1 + (-a).exp()).log()
        h2 = (a.tanh() - h * 0.5) / (1 + a * a) + soft * 0.1 - c ** 2 * 0.05
        return h2, c * 0.9 + (h2 * 0.1).exp() / (c * c + 1.5) + h2 ** 3 * 0.01 + x * 0.2


class MaxCell(Cell):
    """Subtracts the max over the hidden axis: a reduction between two fused loops."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self.W, self.U = self._init(rng, (input_size, hidden_size), (hidden_size, hidden_size))

    def step(self, x, h):
        a = x @ self.W + h @ self.U
        return (a - a.max(axis=-1, keepdims=True)).tanh()


class LogSoftmaxCell(MaxCell):
    """tanh(a) minus a's log-sum-exp over the hidden axis, spelled out: a sum between fused loops.
    (Not a's own log-softmax: at width 1 that is 0 for every input, its gradient 0 up to rounding.)"""

    def step(self, x, h):
        a = x @ self.W + h @ self.U
        return a.tanh() - a.exp().sum(axis=-1, keepdims=True).log()


class BatchMaxCell(MaxCell):
    """The max over the batch axis: a reduction across batch rows (an nd value, its own loop nest)."""

    def step(self, x, h):
        a = x @ self.W + h @ self.U
        return (a - a.max(axis=0, keepdims=True)).tanh()


class FlatSumCell(MaxCell):
    """A sum over the hidden axis without keepdims, (B,), broadcast along the hidden axis (so B is 1 or
    H): nd values, not the fused loops' (B, 1) row values."""

    def step(self, x, h):
        a = x @ self.W + h @ self.U
        return (a - a.sum(axis=-1)).tanh()


BUILTIN = [rnn.ElmanCell, rnn.LSTMCell, rnn.GRUCell]
CUSTOM = [LeakyCell, MinimalGatedCell, TextbookGRU, DeepTransitionCell, MaxCell, LogSoftmaxCell, OddOpsCell]
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def rel(a, b, floor=1e-30):
    return float(np.abs(a - b).max() / max(np.abs(a).max(), floor))


# float32: a gradient that is itself a near-cancelling sum over T*B terms (~1e-5 when its terms
# are ~1e-2) differs between any two summation orders by more than 1e-4 of itself; both backends
# are then that far from the float64 value.  So float32 differences count relative to at least 1e-2,
# and where even that is exceeded (a saturated tanh: 1 - y*y from y = 0.99994) the numba value must
# be within 4x the engine's float32 distance from the float64 value (plus TOL): the kernels' float32
# tanh and sigmoid are a few ulps from libm's (rnn.kernels.helpers), and the cancellation scales that.
FLOOR = {np.float64: 1e-30, np.float32: 1e-2}


def run_both(cell, T, B, seed, dtype, backends=("graph", "numba")):
    """Outputs, final state and every gradient (params, xs, state0, per-step states) from each backend.
    Inputs are drawn as float32 values whatever the dtype, so a float64 run of a float32 cell's
    parameters is its exact twin."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, cell.input_size)).astype(np.float32).astype(dtype)
    s0 = [rng.standard_normal(s.shape).astype(np.float32).astype(dtype) for s in as_tuple(cell.initial_state(B))]
    weights = None
    got = {}
    for backend in backends:
        cell.zero_grad()
        x = Tensor(xs, requires_grad=True)
        state0 = tuple(Tensor(s, requires_grad=True) for s in s0)
        r = rnn.run(cell, x, state0 if len(state0) > 1 else state0[0], backend=backend)
        assert r.backend == backend
        if weights is None:
            weights = rng.standard_normal(r.outputs.shape).astype(np.float32).astype(dtype)
        loss = (r.outputs * weights).sum() + sum((s * s).sum() for s in as_tuple(r.state))
        loss.backward()
        got[backend] = ([("outputs", r.outputs.data), ("xs", x.grad)]
                        + [(n, p.grad) for n, p in cell.named_parameters()]
                        + [(f"state0[{i}]", s.grad) for i, s in enumerate(state0)]
                        + [(f"states[{t}][{i}]", s.grad) for t in range(T) for i, s in enumerate(r.states[t])])
    return got


def assert_same(cell, T, B, seed, dtype):
    got = run_both(cell, T, B, seed, dtype)
    truth = None
    for i, ((name, a), (_, b)) in enumerate(zip(got["graph"], got["numba"])):
        assert b is not None and a.shape == b.shape, name
        err = rel(a, b, FLOOR[dtype])
        if err > TOL[dtype] and dtype == np.float32:
            truth = truth or float64_twin_run(cell, T, B, seed)
            t = truth[i][1]
            err = float(np.abs(b - t).max() / (4 * np.abs(a - t).max() + TOL[dtype] * max(np.abs(t).max(), FLOOR[dtype])))
            assert err <= 1, f"{type(cell).__name__} float32 {name}: {err:.2f} of the allowed distance from float64"
            continue
        assert err <= TOL[dtype], f"{type(cell).__name__} {np.dtype(dtype).name} {name}: {err:.2e}"


def float64_twin_run(cell, T, B, seed):
    """The engine's values for float32 `cell` computed in float64 from the same (exactly widened) numbers."""
    twin = copy.deepcopy(cell)
    twin._dtype = np.dtype(np.float64)
    for p in twin.parameters():
        p.data = p.data.astype(np.float64)
    return run_both(twin, T, B, seed, np.float64, backends=("graph",))["graph"]


sizes = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", BUILTIN + CUSTOM[:-1], ids=lambda c: c.__name__)
@settings(max_examples=8)
@given(sizes=sizes)
def test_matches_unfolded_dag(cls, dtype, sizes):
    T, B, I, H, seed = sizes
    cell = cls(I, H, rng=np.random.default_rng(seed), dtype=dtype)
    assert_same(cell, T, B, seed, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=8)
@given(sizes=sizes)
def test_every_fused_op_matches(dtype, sizes):
    T, B, _, H, seed = sizes
    assert_same(OddOpsCell(H, H, rng=np.random.default_rng(seed), dtype=dtype), T, B, seed, dtype)


def test_relu_elman_and_sizes_one():
    for cell in (rnn.ElmanCell(1, 1, nonlinearity="relu", rng=np.random.default_rng(0)), rnn.LSTMCell(1, 1)):
        assert_same(cell, 1, 1, 0, np.float64)


def test_auto_picks_numba_and_keeps_graph_and_states():
    cell = rnn.LSTMCell(3, 4, rng=np.random.default_rng(0))
    r = rnn.run(cell, np.ones((5, 2, 3)))
    assert r.backend == "numba"
    assert r.graph.T == 5 and len(r.graph.state_out) == 5   # drawn by viz
    assert len(r.states) == 5 and r.states[-1][0].shape == (2, 4)
    r.graph.detached_state0 = True
    r.graph.tensors["edited"] = None
    other = rnn.run(cell, np.ones((5, 2, 3))).graph   # each result has its own graph
    assert not other.detached_state0 and "edited" not in other.tensors


def test_batch_first_and_no_grad():
    cell = rnn.GRUCell(3, 4, rng=np.random.default_rng(0))
    xs = np.random.default_rng(1).standard_normal((2, 5, 3))
    a = rnn.run(cell, xs, batch_first=True, backend="numba")
    with mg.no_grad():
        b = rnn.run(cell, xs, batch_first=True, backend="graph")
    assert a.outputs.shape == (2, 5, 4) and rel(b.outputs.data, a.outputs.data) < 1e-12
    with mg.no_grad():
        c = rnn.run(cell, xs, batch_first=True, backend="numba")
    assert not c.outputs.requires_grad


class BatchFlipCell(MaxCell):
    """Reads the batch rows in reverse: an index into the batch axis, which no kernel compiles."""

    def step(self, x, h):
        return (x @ self.W + h[::-1] @ self.U).tanh()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=4)
@given(sizes=sizes)
def test_reductions_across_the_batch_and_flat_sums_match(dtype, sizes):
    T, B, I, H, seed = sizes
    assert_same(BatchMaxCell(I, H, rng=np.random.default_rng(seed), dtype=dtype), T, B, seed, dtype)
    B = 1 if seed % 2 else H   # (B, H) - (B,) broadcasts only so
    assert_same(FlatSumCell(I, H, rng=np.random.default_rng(seed), dtype=dtype), T, B, seed, dtype)


def test_unsupported_op_is_named_and_auto_falls_back():
    cell = BatchFlipCell(3, 4)
    with pytest.raises(UnsupportedCellError, match=r"op 'getitem' at node n\d+"):
        rnn.run(cell, np.zeros((2, 2, 3)), backend="numba")
    r = rnn.run(cell, np.zeros((2, 2, 3)))
    assert r.backend == "graph" and "'getitem'" in r.fallback


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.__name__)
def test_generated_source_is_readable(cls):
    src = kernel_source(cls(3, 4))
    assert "def forward(T, B, dims, K," in src and "def backward(T, B, dims, K," in src
    assert "S_h[t + 1, b, j] = " in src and "# reverse sweep" in src
    assert all(len(line) < 200 for line in src.splitlines())
    ops = [n for n in cls(3, 4).rolled(1).nodes.values() if n.op not in ("leaf", "transpose", "matmul")]
    for n in ops:   # every computed value has its comment, by its name or its id
        if n.op != "getitem":
            assert re.search(rf"^ *# .*(?:\[{n.id}\]|^ *# {n.id} = )", src, re.M) or f"# {n.id} = " in src, n.id
    assert "h(t-1) @ weight_hh.T" in src and "x(t) @ weight_ih.T" in src   # the step's own names, not node ids
    assert "# XA_" in src and "every step, before the loop" in src        # each array argument says what it holds


def test_pure_python_kernels_agree_with_jitted(monkeypatch):
    """The generated functions run as plain Python too (what NUMBA_DISABLE_JIT and coverage see)."""
    cell = rnn.LSTMCell(2, 3, rng=np.random.default_rng(0))
    jitted = run_both(cell, 3, 2, 0, np.float64)["numba"]
    mod = prepare(cell, 2).module
    for name in ("forward", "backward", "forward_rows", "backward_rows"):
        monkeypatch.setattr(mod, name, getattr(mod, name).py_func)
    python = run_both(cell, 3, 2, 0, np.float64)["numba"]
    for (name, a), (_, b) in zip(jitted, python):
        assert rel(a, b) < 1e-13, name


class OutputCell(rnn.LSTMCell):
    """Emits h + c instead of h: cell.output runs on the kernel's per-step states."""

    def output(self, state):
        return state[0] + state[1]


def test_custom_output_and_per_step_state_gradients():
    assert_same(OutputCell(3, 4, rng=np.random.default_rng(0)), 4, 2, 0, np.float64)


def test_changing_a_cell_attribute_after_a_run_retraces():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    xs = np.random.default_rng(1).normal(size=(4, 1, 2))
    rnn.run(cell, xs, backend="numba")
    cell.nonlinearity = "relu"  # the kernel traced for tanh must not be reused
    fused = rnn.run(cell, xs, backend="numba").outputs.data
    graph = rnn.run(cell, xs, backend="graph").outputs.data
    np.testing.assert_allclose(fused, graph, rtol=1e-12)


@pytest.mark.parametrize("blas_rows", [1 << 30, 1], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,K,N", [(1, 5, 7), (2, 4, 8), (3, 9, 3), (5, 64, 256), (4, 300, 300)])
def test_generated_matmul_matches_numpy(dtype, B, K, N, blas_rows):
    """The per-step products: fma loops (odd B, K % 4 != 0) and np.dot, from `blas_rows` rows
    on or past K * N = 65536."""
    from rnn.kernels.helpers import matmul
    rng = np.random.default_rng(B * K * N)
    h, W = rng.standard_normal((B, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    out = np.full((B, N), np.nan, dtype)
    matmul(h, W, out, blas_rows)
    np.testing.assert_allclose(out, h @ W, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)


@given(rows=st.integers(1, 70), cols=st.integers(1, 70), dtype=st.sampled_from([np.float64, np.float32]),
       layout=st.sampled_from(["C", "F", "strided"]))
def test_transposed_weights_are_exact_copies(rows, cols, dtype, layout):
    """A recurrent weight W.T as the per-step products read it (C-contiguous), tiles of 16 cut at
    any edge; an F-contiguous W is already its transpose's C order and is not copied."""
    from rnn.kernels.blas import _transpose, transposed
    a = np.random.default_rng(rows * 71 + cols).standard_normal((rows, 2 * cols)).astype(dtype)
    a = {"C": a[:, :cols].copy(), "F": np.asfortranarray(a[:, :cols]), "strided": a[:, ::2]}[layout]
    t = transposed(a)
    assert t.flags.c_contiguous and t.dtype == dtype
    np.testing.assert_array_equal(t, a.T)
    assert np.shares_memory(t, a) == a.flags.f_contiguous  # F, or a single row or column
    tiled = np.full(a.shape[::-1], np.nan, dtype)  # the tiles, which `transposed` uses from 65536 elements
    _transpose(np.ascontiguousarray(a), tiled)
    np.testing.assert_array_equal(tiled, a.T)


def test_large_weights_are_transposed_in_tiles():
    from rnn.kernels.blas import transposed
    a = np.random.default_rng(0).standard_normal((517, 259)).astype(np.float32)
    np.testing.assert_array_equal(transposed(a), a.T)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", BUILTIN + CUSTOM[:-1], ids=lambda c: c.__name__)
@settings(max_examples=4)
@given(sizes=sizes)
def test_per_step_products_through_blas_match_the_dag(cls, dtype, sizes):
    """With a BLAS that has small-matrix kernels the per-step products go through np.dot from a few
    rows on (CI's BLAS keeps them in the generated loops up to 31 rows): force that path."""
    T, B, I, H, seed = sizes
    with pytest.MonkeyPatch.context() as mp:  # hypothesis runs the body many times: patch per run
        mp.setattr("rnn.kernels.blas._blas_rows", 1)
        cell = cls(I, H, rng=np.random.default_rng(seed), dtype=dtype)  # fresh: prepared with the patched rule
        assert prepare(cell, B).dims[-1] == 1
        assert_same(cell, T, B, seed, dtype)


@pytest.mark.parametrize("kernel,rows", [("SkylakeX", 4), ("Haswell", 32), (None, 32)])
def test_blas_rows_follow_the_blas_kernel(monkeypatch, kernel, rows):
    monkeypatch.setattr("rnn.kernels.blas._blas_rows", None)
    monkeypatch.setattr("rnn.kernels.blas.blas_kernel", lambda: kernel)
    from rnn.kernels.blas import blas_rows
    assert blas_rows() == rows


def test_blas_kernel_survives_a_failing_probe(monkeypatch):
    import threadpoolctl
    from rnn.kernels.blas import blas_kernel

    def broken():
        raise OSError("cannot read the loaded libraries")
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", broken)
    assert blas_kernel() is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", BUILTIN, ids=lambda c: c.__name__)
def test_a_nan_input_spreads_like_in_the_dag(cls, dtype):
    """NaN in x(t0) of one batch row: the kernels' call-free exp/tanh must give NaN from t0 on in that
    row, as the unfolded DAG does, and leave the other rows exact."""
    cell = cls(3, 4, rng=np.random.default_rng(2), dtype=dtype)
    xs = np.random.default_rng(3).standard_normal((5, 3, 3)).astype(dtype)
    xs[2, 1, 0] = np.nan
    out = {b: rnn.run(cell, Tensor(xs, requires_grad=True), backend=b) for b in ("graph", "numba")}
    for r in out.values():
        r.outputs.sum().backward()
    graph, fused = out["graph"].outputs.data, out["numba"].outputs.data
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(graph))
    assert np.isnan(fused[2:, 1]).all() and not np.isnan(fused[:, [0, 2]]).any()
    np.testing.assert_allclose(fused[:, [0, 2]], graph[:, [0, 2]], rtol=1e-4 if dtype == np.float32 else 1e-12)


def test_equal_gradient_arrays_are_stored_once():
    """x W_ih + b_ih + h W_hh + b_hh: the hoisted and the recurrent product get the same gradient,
    and so do the two biases.  The kernel stores each once and the runtime passes it twice; the
    GRU's candidate gate multiplies h W_hn + b_hn by r, so there the arrays differ and both stay."""
    for cls in (rnn.ElmanCell, rnn.LSTMCell):
        prep = prepare(cls(3, 4), 2)
        src = kernel_source(cls(3, 4), batch=2)
        kinds = sorted(name.split("_")[0] for name in prep.layout.same)
        assert kinds == ["dP", "dXA"], prep.layout.same
        for name in prep.layout.same:
            assert f"{name}[" not in src and name not in prep.layout.arrays
    assert prepare(rnn.GRUCell(3, 4), 2).layout.same == {}


def test_products_the_backward_does_not_read_keep_one_step():
    """h W_hh in Elman and the LSTM feeds only a sum whose derivative needs no value: the kernel keeps
    one step of it (rewritten in cache every step) instead of every step's; the GRU's candidate gate
    multiplies h W_hn + b_hn by r, so its backward reads the product and every step's stays."""
    for cls, rows in ((rnn.ElmanCell, 1), (rnn.LSTMCell, 1), (rnn.GRUCell, "T")):
        prep = prepare(cls(3, 4), 2)
        products = {name: spec for name, (kind, _, spec) in prep.layout.arrays.items() if kind == "rec"}
        assert products and all(spec[0] == rows for spec in products.values()), (cls.__name__, products)
        src = kernel_source(cls(3, 4), batch=2)
        for name in products:
            every, one = re.search(rf"\b{name}\[t", src), re.search(rf"\b{name}\[0", src)
            assert bool(every) == (rows == "T") and bool(one) == (rows == 1), (cls.__name__, name)


def test_weights_reach_the_kernel_node_without_transpose_nodes():
    """x @ W.T reads W itself: the engine records the kernel node with the parameters as parents,
    and no transpose (or matmul) node around it; LeakyCell's x @ W has nothing to fold."""
    from minigrad.walk import toposort
    for cell in (rnn.ElmanCell(3, 4), rnn.LSTMCell(3, 4), rnn.GRUCell(3, 4), LeakyCell(3, 4)):
        xs = Tensor(np.ones((5, 2, 3)), requires_grad=True)
        out = rnn.run(cell, xs, backend="numba").outputs
        ops = {t.op for t in toposort([out], lambda t: t._parents)}
        assert "transpose" not in ops and "matmul" not in ops, (type(cell).__name__, ops)
        kernel = next(t for t in toposort([out], lambda t: t._parents) if t.op == "rnn_kernel")
        parents = {id(p) for p in kernel._parents}
        assert id(xs) in parents and all(id(p) in parents for p in cell.parameters())


@pytest.mark.parametrize("cls", [rnn.ElmanCell, rnn.LSTMCell])
def test_final_state_is_the_last_step_state_with_its_gradient(cls):
    """As with the graph backend, result.state is states[-1]: after backward its .grad is dL/dstate(T)."""
    cell = cls(3, 4, rng=np.random.default_rng(0))
    xs = np.random.default_rng(1).standard_normal((5, 2, 3))
    got = {}
    for backend in ("graph", "numba"):
        r = rnn.run(cell, xs, backend=backend)
        last = r.states[-1] if isinstance(r.state, tuple) else r.states[-1][0]
        assert r.state is last
        (r.outputs * r.outputs).sum().backward()
        got[backend] = [s.grad for s in as_tuple(r.state)]
    for g, n in zip(got["graph"], got["numba"]):
        assert g is not None and rel(g, n) < 1e-12


def test_states_of_one_width_come_out_of_the_kernels_buffer_without_a_copy():
    """An LSTM's h and c: the kernel node's output is (T, B, 2, H) and each state is its [..., i, :],
    a contiguous view of the memory the kernel wrote, with no copy putting them side by side; a loss on
    c (the second state) gets the graph's gradients through it.  States of two widths (an LSTM under a
    GRU of H + 1) are put side by side, (T, B, H + H + H + 1)."""
    from minigrad.walk import toposort
    rng = np.random.default_rng(0)
    xs = Tensor(rng.standard_normal((5, 2, 3)))
    cell = rnn.LSTMCell(3, 4, rng=rng)
    r = rnn.run(cell, xs, backend="numba")
    h, c = r.per_state
    kernel = next(t for t in toposort([h], lambda t: t._parents) if t.op == "rnn_kernel")
    assert kernel.shape == (5, 2, 2, 4) and h.shape == c.shape == (5, 2, 4)
    assert h.data.flags.c_contiguous and c.data.flags.c_contiguous
    assert np.shares_memory(h.data, kernel.data) and np.shares_memory(c.data, kernel.data)
    grads = {}
    for backend in ("numba", "graph"):
        cell.zero_grad()
        r = rnn.run(cell, xs, backend=backend)
        (r.states[-1][1] * r.states[-1][1]).sum().backward()
        grads[backend] = [p.grad.copy() for p in cell.parameters()]
    assert all(rel(a, b) < 1e-12 for a, b in zip(grads["numba"], grads["graph"]))
    deep = rnn.Stacked([rnn.LSTMCell(3, 4, rng=rng), rnn.GRUCell(4, 5, rng=rng)])
    r = rnn.run(deep, xs, backend="numba")
    kernel = next(t for t in toposort([r.outputs], lambda t: t._parents) if t.op == "rnn_kernel")
    assert kernel.shape == (5, 2, 4 + 4 + 5)


def test_bias_gradients_are_summed_outside_the_fused_loop():
    """x W + b: db is the batch sum of d(x W), which the fused loop writes anyway; accumulating it
    inside that loop cost a quarter of the LSTM backward at B = 1.  Every built-in cell's biases
    take the summed path."""
    for cls in (rnn.ElmanCell, rnn.LSTMCell, rnn.GRUCell):
        src = kernel_source(cls(3, 4), batch=2)
        backward = src[src.index("def backward"):]
        assert "sum over the batch" in backward
        assert not any(line.strip().startswith("dP_") and "+= g_" in line for line in backward.splitlines())
