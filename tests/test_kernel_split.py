"""The batch split between workers (rnn.kernels.threads): the kernels of a step whose batch rows never
read each other may run as blocks of rows on threads of their own, each block the whole loop over
time (forward_rows / backward_rows).  Forced on at every batch here, that must equal the explicit
graph (outputs, states and every gradient, per-step states included) to 1e-10 in float64 and 1e-4
in float32, and the serial kernels; a step whose rows meet (an nd value over the batch) never splits."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnn
from minigrad.nn import Parameter
from rnn import kernel_source
from rnn.kernels import threads
from rnn.kernels.binding import prepare
from tests.test_codegen import CUSTOM, BatchMaxCell, TOL, assert_same, rel, run_both
from tests.test_kernel_rows import Normed


class PeepholeCell(rnn.Cell):
    """h' = tanh(x W + h U + b + p * h) * s: p (H,) and s (a scalar) read element-wise, so their
    gradients are sums over the batch accumulated inside the fused loop — each worker's into its own
    copy."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.W, self.U, self.b = self._init(rng, (input_size, hidden_size), (hidden_size, hidden_size), (hidden_size,))
        self.p = Parameter(rng.normal(0, 0.5, hidden_size).astype(dtype))
        self.s = Parameter(np.asarray(rng.uniform(0.5, 1.5), dtype))

    def step(self, x, h):
        return (x @ self.W + h @ self.U + self.b + self.p * h).tanh() * self.s


class Counted:
    """A kernel function that counts its calls, and the blocks of rows they ran."""

    def __init__(self, fn):
        self.fn, self.calls, self.blocks = fn, 0, set()

    def __call__(self, T, B, b0, b1, *args):
        self.calls += 1
        self.blocks.add((b0, b1))
        return self.fn(T, B, b0, b1, *args)


def forced(mp, n=3):
    """The split kernels at every batch of 2 rows or more, in `n` blocks (3 by default: uneven ones,
    and more blocks than a 2-core machine has threads)."""
    mp.setattr(threads, "_threads", n)
    mp.setattr(threads, "_min_batch", 2)


def assert_split_same(cell, T, B, seed, dtype):
    """Equal to the graph, and the kernels ran as blocks of rows (3, or one per row when fewer)."""
    mod = prepare(cell, B).module
    assert mod.ROWS_INDEPENDENT
    fwd, bwd = Counted(mod.forward_rows), Counted(mod.backward_rows)
    with pytest.MonkeyPatch.context() as mp:  # hypothesis runs the body many times: patch per run
        forced(mp)
        mp.setattr(mod, "forward_rows", fwd)
        mp.setattr(mod, "backward_rows", bwd)
        assert_same(cell, T, B, seed, dtype)
    blocks = sorted(fwd.blocks)
    assert len(blocks) == min(3, B) and blocks[0][0] == 0 and blocks[-1][1] == B and bwd.blocks == fwd.blocks


sizes = st.tuples(st.integers(1, 5), st.integers(2, 7), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [rnn.LSTMCell, PeepholeCell], ids=lambda c: c.__name__)
@settings(max_examples=6)
@given(sizes=sizes)
def test_split_kernels_match_the_graph(cls, dtype, sizes):
    T, B, I, H, seed = sizes
    assert_split_same(cls(I, H, rng=np.random.default_rng(seed), dtype=dtype), T, B, seed, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=6)
@given(sizes=sizes)
def test_split_kernels_with_row_values_match_the_graph(dtype, sizes):
    """A reduction over the features (layer norm's means) and a parameter read element-wise."""
    T, B, I, H, seed = sizes
    assert_split_same(Normed(I, H, "layer_norm", np.random.default_rng(seed), dtype), T, B, seed, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [rnn.ElmanCell, rnn.GRUCell] + [c for c in CUSTOM if c.__name__ != "OddOpsCell"],
                         ids=lambda c: c.__name__)
@settings(max_examples=4)
@given(sizes=sizes)
def test_every_separable_cell_split_matches_the_graph(cls, dtype, sizes):
    T, B, I, H, seed = sizes
    assert_split_same(cls(I, H, rng=np.random.default_rng(seed), dtype=dtype), T, B, seed, dtype)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_equals_the_serial_kernels(monkeypatch, dtype, n):
    """Per row the same arithmetic: only the sums over the batch (b's gradient) are added in another order."""
    cell = rnn.LSTMCell(4, 6, rng=np.random.default_rng(0), dtype=dtype)
    forced(monkeypatch, n)
    got = run_both(cell, 5, 7, 0, dtype)["numba"]
    forced(monkeypatch, 1)
    serial = run_both(cell, 5, 7, 0, dtype)["numba"]
    for (name, a), (_, b) in zip(serial, got):
        assert rel(a, b) <= TOL[dtype] / 100, name


def test_split_only_where_rows_never_meet(monkeypatch):
    assert "ROWS_INDEPENDENT = True" in kernel_source(rnn.LSTMCell(3, 4), batch=4)
    assert "ROWS_INDEPENDENT = True" in kernel_source(PeepholeCell(3, 4), batch=4)
    assert "ROWS_INDEPENDENT = False" in kernel_source(BatchMaxCell(3, 4), batch=4)  # a max over the batch
    cell = BatchMaxCell(3, 4, rng=np.random.default_rng(0))
    mod = prepare(cell, 4).module
    forced(monkeypatch)
    rows = Counted(mod.forward_rows)
    monkeypatch.setattr(mod, "forward_rows", rows)
    monkeypatch.setattr(mod, "forward", lambda *a: rows(a[0], a[1], 0, a[1], *a[2:]))
    rnn.run(cell, np.ones((2, 4, 3)), backend="numba")
    assert rows.blocks == {(0, 4)}


def test_workers_follow_the_settings(monkeypatch):
    monkeypatch.setattr(threads, "_threads", None)
    monkeypatch.setattr(threads, "_min_batch", None)
    monkeypatch.delenv("MINIGRAD_KERNEL_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.threads() == 2  # the default on two cores
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    assert threads.threads() == 1
    monkeypatch.setenv("MINIGRAD_KERNEL_THREADS", "2")
    monkeypatch.delenv("MINIGRAD_SPLIT_BATCH", raising=False)
    assert threads.workers(threads.SPLIT_BATCH - 1) == 1 and threads.workers(threads.SPLIT_BATCH) == 2
    monkeypatch.setenv("MINIGRAD_SPLIT_BATCH", "3")
    assert threads.workers(2) == 1 and threads.workers(3) == 2
    monkeypatch.setenv("MINIGRAD_KERNEL_THREADS", "1")  # never split
    assert threads.workers(1000) == 1
    threads.set_threads(4, min_batch=8)
    assert threads.workers(7) == 1 and threads.workers(8) == 4 and threads.workers(3) == 1
    monkeypatch.setenv("MINIGRAD_KERNEL_THREADS", "two")
    monkeypatch.setattr(threads, "_threads", None)
    with pytest.raises(ValueError, match="MINIGRAD_KERNEL_THREADS"):
        threads.workers(1000)
    with pytest.raises(ValueError):
        threads.set_threads(0)


def test_a_failing_block_raises_after_every_block_finished(monkeypatch):
    class Module:
        ROWS_INDEPENDENT = True

        def forward_rows(self, T, B, b0, b1, dims, K, out):
            out[b0:b1] = 1
            if b0:
                raise RuntimeError("block")
    forced(monkeypatch, 2)
    out = np.zeros(4)
    with pytest.raises(RuntimeError, match="block"):
        threads.run_kernel(Module(), "forward", 1, 4, np.zeros(1, np.int64), None, [out], split=True)
    assert (out == 1).all()


def test_blas_runs_on_one_thread_inside_a_split_call_and_as_before_after():
    lib = threads._blas_controller()
    if lib is None:
        pytest.skip("no OpenBLAS under Numba's np.dot")
    before = lib.num_threads
    with threads.one_blas_thread():
        assert lib.num_threads == 1
    assert lib.num_threads == before


def test_split_only_while_every_recurrent_weight_is_within_the_bound(monkeypatch):
    """Each block of a split call reads every recurrent weight whole at every step, from L3: past
    SPLIT_WEIGHT_BYTES a call is not split (LSTM float32 at H = 1024 was slower split, at H = 512 faster)."""
    assert 4 * 512 * 512 * 8 <= threads.SPLIT_WEIGHT_BYTES < 4 * 1024 * 1024 * 4
    monkeypatch.setattr(threads, "_threads", 2)
    monkeypatch.setattr(threads, "_min_batch", 2)
    cell = rnn.LSTMCell(3, 6, rng=np.random.default_rng(0), dtype=np.float64)
    prep = prepare(cell, 4)
    assert prep.weight_bytes == 6 * 24 * 8  # W_hh.T, 6 x 24 doubles
    monkeypatch.setattr(threads, "SPLIT_WEIGHT_BYTES", 6 * 24 * 8)
    assert threads.splits(prep, 4)
    monkeypatch.setattr(threads, "SPLIT_WEIGHT_BYTES", 6 * 24 * 8 - 1)
    assert not threads.splits(prep, 4)
    assert not threads.splits(prepare(cell, 1), 1)  # one row: nothing to split


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls, H", [(rnn.LSTMCell, 129), (rnn.ElmanCell, 257)], ids=["LSTM", "Elman"])
def test_split_with_a_weight_past_l2_matches_the_graph(cls, H, dtype):
    """W past L2_WEIGHT: each block's per-step products go through BLAS (oneDNN in float32 where the
    system has it, else OpenBLAS on the block's one thread), not the generated loops."""
    from rnn.kernels.helpers import L2_WEIGHT
    cell = cls(3, H, rng=np.random.default_rng(1), dtype=dtype)
    assert cell.weight_hh.size > L2_WEIGHT
    assert_split_same(cell, 3, 5, 1, dtype)


@pytest.mark.parametrize("form", ["nn", "nt", "tn", "tt"])
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40), dtype=st.sampled_from([np.float64, np.float32]))
def test_split_gemms_equal_the_whole_ones(form, m, k, n, dtype):
    """matmul2d(split=True): halves of a's rows, or of the inner dimension added (a transposed a), on two
    threads, each on one OpenBLAS thread: the product, to rounding (the halves' sums are added in
    another order)."""
    from rnn.kernels import blas
    rng = np.random.default_rng(m * 1681 + k * 41 + n)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    a = np.asfortranarray(a) if form[0] == "t" else a  # as a.T of a C array reaches it
    b = np.asfortranarray(b) if form[1] == "t" else b
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blas, "_SPLIT_WORK", 0)  # split at any size
        got = blas.matmul2d(a, b, split=True)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@given(shapes=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30), st.integers(1, 30), st.booleans()),
                       min_size=1, max_size=4),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_split_gemms_in_one_hand_off(shapes, dtype):
    """matmuls2d(split=True): every product equals its own, to rounding, and all of them cost a single
    hand-off to the worker (each a hand-off of its own had cost ~70 us apiece)."""
    from rnn.kernels import blas
    rng = np.random.default_rng(len(shapes))
    pairs = []
    for m, k, n, transposed in shapes:
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        pairs.append((np.asfortranarray(a) if transposed else a, b))
    hand_offs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blas, "_SPLIT_WORK", 0)
        mp.setattr(blas, "in_two", lambda first, second: (hand_offs.append(1), threads.in_two(first, second)))
        got = blas.matmuls2d(pairs, split=True)
    splittable = [p for p in pairs if min(p[0].shape[0], p[0].shape[1]) >= 2]
    assert len(hand_offs) == (1 if splittable else 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for (a, b), g in zip(pairs, got):
        np.testing.assert_allclose(g, a.astype(np.float64) @ b, rtol=tol, atol=tol)
