"""Float32 products through oneDNN's sgemm (rnn.kernels.onednn), where the system has libdnnl: the
kernels' per-step products (helpers.matmul_onednn, linked by name) and the GEMMs around them
(blas.matmul2d) must give what OpenBLAS and the explicit graph give; without the library, or with
MINIGRAD_ONEDNN=0, float32 runs as before.  CI installs Debian's libdnnl2, so these run there."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnn
from minigrad import Tensor
from rnn.kernels import blas, onednn, threads
from rnn.kernels.binding import prepare
from rnn.kernels.emit import generate
from rnn.kernels.helpers import ONEDNN_PRODUCT
from rnn.kernels.passes import make_plan
from tests.test_codegen import assert_same

needs_onednn = pytest.mark.skipif(not onednn.available(), reason="no libdnnl on this machine (Debian: libdnnl2)")


@needs_onednn
@pytest.mark.parametrize("form", ["nn", "tn", "nt", "tt"])
@settings(max_examples=10)
@given(m=st.integers(1, 300), k=st.integers(1, 300), n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_gemms_through_onednn_equal_numpy(form, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if form[0] == "t" else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if form[1] == "t" else (k, n)).astype(np.float32)
    a, b = (a.T if form[0] == "t" else a), (b.T if form[1] == "t" else b)
    (ca, ta), (cb, tb) = blas.c_or_transposed(a), blas.c_or_transposed(b)  # as matmul2d hands them over
    out = np.empty((m, n), np.float32)
    onednn.sgemm(ca, cb, out, ta, tb)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@needs_onednn
def test_large_float32_gemms_go_to_onednn_small_ones_and_float64_do_not(monkeypatch):
    calls = []
    monkeypatch.setattr(onednn, "sgemm", lambda *a: calls.append(a[2].shape) or np.dot(
        a[0].T if a[3] else a[0], a[1].T if a[4] else a[1], out=a[2]))
    big = np.ones((256, 128), np.float32), np.ones((128, 64), np.float32)  # 2**21 multiply-adds
    blas.matmul2d(*big)
    blas.matmul2d(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32))
    blas.matmul2d(*(x.astype(np.float64) for x in big))
    assert calls == [(256, 64)]


@needs_onednn
@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("cls", [rnn.LSTMCell, rnn.GRUCell, rnn.ElmanCell], ids=lambda c: c.__name__)
def test_kernels_with_onednn_products_match_the_graph(cls, blocks, monkeypatch):
    """B = 32, H = 128: every per-step product is past ONEDNN_PRODUCT, a half batch's too, so each step's
    go to oneDNN — in one call over the batch, or split in two blocks of rows, each calling oneDNN on
    its own thread — and outputs, states and every gradient equal the graph's."""
    monkeypatch.setattr(threads, "_threads", blocks)
    monkeypatch.setattr(threads, "_min_batch", 32)
    cell = cls(16, 128, rng=np.random.default_rng(0), dtype=np.float32)
    prep = prepare(cell, 32)
    assert prep.layout.onednn and threads.splits(prep, 32) == (blocks == 2)
    assert "import jit, matmul_onednn as matmul," in open(prep.module.__file__).read()
    assert 16 * 128 * 128 >= ONEDNN_PRODUCT
    assert_same(cell, 3, 32, 0, np.float32)


@needs_onednn
@pytest.mark.parametrize("one_hot", [False, True])
def test_split_blocks_compute_their_rows_of_the_hoisted_product(one_hot, monkeypatch):
    """A split call's blocks compute their rows of x(t) @ W_ih.T at the top of each step (the kernel's
    dims flag set, no GEMM over all steps before the loop), and everything equals the graph.  A one-hot
    x(t) that needs no gradient stays a gather of W_ih's rows before the loop (the flag unset)."""
    from rnn.kernels import binding
    monkeypatch.setattr(threads, "_threads", 2)
    monkeypatch.setattr(threads, "_min_batch", 32)
    cell = rnn.LSTMCell(128, 128, rng=np.random.default_rng(0), dtype=np.float32)
    prep = prepare(cell, 32)
    assert prep.layout.hoisted_in_blocks == ["XA_n3"] and threads.splits(prep, 32)
    seen, gemms = [], []
    kernel, gemm = binding.run_kernel, binding.matmul2d
    monkeypatch.setattr(binding, "run_kernel", lambda m, name, T, B, dims, *a, **k: (
        seen.append((name, int(dims[-2]))), kernel(m, name, T, B, dims, *a, **k))[1])
    monkeypatch.setattr(binding, "matmul2d", lambda a, b, *r: (gemms.append(a.shape), gemm(a, b, *r))[1])
    if one_hot:
        rng = np.random.default_rng(1)
        x = np.eye(128, dtype=np.float32)[rng.integers(0, 128, (3, 32))]
        fused, graph = (rnn.run(cell, Tensor(x), backend=b) for b in ("numba", "graph"))
        np.testing.assert_allclose(fused.outputs.data, graph.outputs.data, rtol=1e-5, atol=1e-6)
    else:
        assert_same(cell, 3, 32, 0, np.float32)
    forward = [flag for name, flag in seen if name == "forward"]
    assert forward and all(flag == int(not one_hot) for flag in forward)
    assert (3 * 32, 128) not in gemms  # the hoisted product: by the blocks, or a gather


@needs_onednn
def test_one_thread_keeps_only_the_calling_threads_onednn_on_it():
    import threading
    get = onednn._load()[2][1]
    seen = {}

    def worker():
        with onednn.one_thread():
            seen["inside"] = get()
            main_done.wait()
        seen["after"] = get()
    main_done = threading.Event()
    before = get()
    t = threading.Thread(target=worker)
    t.start()
    while "inside" not in seen:
        pass
    seen["main meanwhile"] = get()
    main_done.set()
    t.join()
    assert before > 1 or os.cpu_count() == 1
    assert seen == {"inside": 1, "main meanwhile": before, "after": before}


@needs_onednn
@pytest.mark.parametrize("form", ["nn", "tn", "nt", "tt"])
def test_split_large_float32_gemms_run_each_half_on_one_thread(form, monkeypatch):
    """matmul2d(split=True) on oneDNN: halves of rows, or of the inner dimension added, each call with
    oneDNN's thread count at 1 on its thread — the product, to float32 rounding."""
    get, counts, real = onednn._load()[2][1], [], onednn.sgemm
    monkeypatch.setattr(onednn, "sgemm", lambda *a: counts.append(get()) or real(*a))
    rng = np.random.default_rng(len(form) + ord(form[0]) + 2 * ord(form[1]))
    m, k, n = 700, 600, 90  # 3.8e7 multiply-adds: past the split's bound
    a = rng.standard_normal((k, m)).astype(np.float32).T if form[0] == "t" else rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if form[1] == "t" else rng.standard_normal((k, n)).astype(np.float32)
    got = blas.matmul2d(a, b, split=True)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4, atol=1e-4 * np.sqrt(k))
    assert counts == [1, 1]
    counts.clear()
    blas.matmul2d(a, b)  # unsplit: oneDNN's own threads
    assert counts == [get()] and get() > 1 or os.cpu_count() == 1


_THREADS = """
import threading, numpy as np
import rnn
from minigrad import Tensor
from rnn.kernels import blas, onednn, threads
def os_threads():  # threads the OS has that Python did not start: BLAS and OpenMP workers
    import os
    return len(os.listdir("/proc/self/task")) - threading.active_count()
threads.set_threads(2, min_batch=32)
cell = rnn.LSTMCell(16, 128, rng=np.random.default_rng(0), dtype=np.float32)
xs = Tensor(np.random.default_rng(1).standard_normal((5, 32, 16)).astype(np.float32), requires_grad=True)
from rnn.kernels.binding import prepare
prepare(cell, 32)  # compiling or loading the kernels starts a thread of its own
before = os_threads()
rnn.run(cell, xs, backend="numba").outputs.sum().backward()
split = os_threads()
a = np.ones((512, 512), np.float32)
blas.matmul2d(a, a)
print(before, split, os_threads())
"""


@needs_onednn
@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2, reason="Linux, 2 cores")
def test_a_split_run_starts_no_openmp_thread_a_plain_onednn_gemm_does():
    """Two blocks each calling oneDNN on two threads would be four threads on two cores: a split call
    (its kernels' products, the GEMMs around them) starts none of OpenMP's; a plain large GEMM does."""
    out = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True, check=True).stdout
    before, split, after = map(int, out.split())
    assert split == before < after


def test_a_float64_split_run_does_not_load_onednn():
    """one_thread around each block loads nothing: a process that only runs float64 never loads libdnnl
    (nor sets the engine's float32 hook)."""
    code = """
import numpy as np
import rnn
from minigrad import Tensor, primitives
from rnn.kernels import onednn, threads
threads.set_threads(2, min_batch=4)
cell = rnn.LSTMCell(3, 8, rng=np.random.default_rng(0))
xs = Tensor(np.random.default_rng(1).standard_normal((4, 8, 3)), requires_grad=True)
rnn.run(cell, xs, backend="numba").outputs.sum().backward()
from rnn.kernels.binding import prepare
print(threads.splits(prepare(cell, 8), 8), onednn._loaded is None, primitives.large_float32_matmul is None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]


def test_loading_sets_a_short_spin_only_while_libgomp_reads_it(monkeypatch):
    """GOMP_SPINCOUNT is set while the library loads (libgomp reads it then), the environment left as it
    was after; a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is theirs."""
    from minigrad import primitives
    seen = []

    def load(name):
        seen.append(os.environ.get("GOMP_SPINCOUNT"))
        raise OSError(name)
    monkeypatch.setattr(onednn.ctypes, "CDLL", load)
    monkeypatch.setattr(onednn.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(primitives, "large_float32_matmul", None)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(onednn, "_loaded", None)
    assert not onednn.available()
    assert seen and set(seen) == {onednn.SPINCOUNT} and "GOMP_SPINCOUNT" not in os.environ
    for name, value in (("GOMP_SPINCOUNT", "123"), ("OMP_WAIT_POLICY", "passive")):
        seen.clear()
        monkeypatch.setenv(name, value)
        monkeypatch.setattr(onednn, "_loaded", None)
        assert not onednn.available()
        assert set(seen) == ({"123"} if name == "GOMP_SPINCOUNT" else {None}) and os.environ[name] == value
        monkeypatch.delenv(name)


def test_float64_and_small_float32_products_stay_on_openblas():
    small = make_plan(rnn.LSTMCell(8, 16, rng=np.random.default_rng(0), dtype=np.float32).rolled(4))
    wide = make_plan(rnn.LSTMCell(8, 128, rng=np.random.default_rng(0), dtype=np.float64).rolled(32))
    for plan in (small, wide):
        source, layout = generate(plan)
        assert not layout.onednn and "import jit, matmul," in source


def test_without_the_library_float32_runs_on_openblas(monkeypatch):
    from minigrad import primitives
    monkeypatch.setattr(onednn, "_loaded", False)
    monkeypatch.setattr(primitives, "large_float32_matmul", None)  # as in a process that never found it
    assert not onednn.available()
    source, layout = generate(make_plan(rnn.LSTMCell(8, 128, rng=np.random.default_rng(0),
                                                     dtype=np.float32).rolled(32)))
    assert not layout.onednn and "matmul_onednn" not in source


def test_minigrad_onednn_0_turns_it_off():
    env = {**os.environ, "MINIGRAD_ONEDNN": "0"}
    out = subprocess.run([sys.executable, "-c", "from rnn.kernels import onednn; print(onednn.available())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@needs_onednn
def test_the_engines_large_float32_products_go_to_onednn_too(monkeypatch):
    """Once oneDNN is loaded, minigrad's own matmul sends large float32 products there (one thread pool
    for the process), into arrays of their own, with the same values and gradients."""
    import minigrad as mg
    from minigrad import primitives
    hook = primitives.large_float32_matmul
    assert hook.func is blas.matmul2d and hook.keywords == {"pooled": False}
    calls = []
    real = onednn.sgemm
    monkeypatch.setattr(onednn, "sgemm", lambda *a: calls.append(a[2].shape) or real(*a))
    rng = np.random.default_rng(0)
    a64, b64 = rng.standard_normal((256, 96)), rng.standard_normal((96, 64))
    a = mg.Tensor(a64.astype(np.float32), requires_grad=True)
    b = mg.Tensor(b64.astype(np.float32), requires_grad=True)
    y = a @ b                                   # 256 * 96 * 64 >= 2**20: oneDNN
    (y * y).sum().backward()                    # dA = g @ b.T (b transposed), dB = a.T @ g (a transposed)
    assert calls == [(256, 64), (256, 96), (96, 64)]
    y64 = a64.astype(np.float32).astype(np.float64) @ b64.astype(np.float32)
    np.testing.assert_allclose(y.data, y64, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(a.grad, 2 * y64 @ b64.astype(np.float32).T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.grad, 2 * a64.astype(np.float32).T @ y64, rtol=1e-4, atol=1e-3)
    again = a @ b
    assert not np.shares_memory(again.data, y.data)
    calls.clear()
    mg.Tensor(a64) @ mg.Tensor(b64)             # float64
    mg.Tensor(a64[:8].astype(np.float32)) @ b   # 8 * 96 * 64: small
    assert calls == []


def test_a_library_llvm_cannot_load_leaves_float32_on_openblas(monkeypatch):
    import llvmlite.binding as llvm
    from minigrad import primitives

    def refuse(name):
        raise RuntimeError(f"cannot load {name}")
    monkeypatch.setattr(onednn, "_loaded", None)
    monkeypatch.setattr(primitives, "large_float32_matmul", None)
    monkeypatch.setattr(llvm, "load_library_permanently", refuse)
    assert not onednn.available() and onednn.library() is None
    assert primitives.large_float32_matmul is None
