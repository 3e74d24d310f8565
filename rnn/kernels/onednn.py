"""oneDNN's float32 GEMM, `dnnl_sgemm`, where the system has the library (Debian: libdnnl2).

On this project's machines it runs an LSTM's six float32 products 13–25% faster than OpenBLAS
(docs/performance.md, "oneDNN's GEMM"), and it is what PyTorch's fused float32 LSTM runs on.  Every
large float32 product of the process then goes through it — the kernels' per-step products
(rnn.kernels.helpers.matmul_onednn, a call Numba links by name), the GEMMs around them
(rnn.kernels.blas) and the engine's own matmuls (minigrad.primitives.large_float32_matmul, set when
the library loads) — because oneDNN's OpenMP threads and OpenBLAS's beside them made a run 1.5–2×
slower.  Without the library, or with MINIGRAD_ONEDNN=0, float32 goes through OpenBLAS as float64
always does.

A split call (rnn.kernels.threads) runs each block's oneDNN products on the block's own thread
(one_thread), so that two blocks never start four threads on two cores.  And GNU OpenMP's idle
threads, which by default spin ~9 ms after every parallel GEMM (measured here), taking the core a
block runs on, spin at most ~1 ms in a process that loads oneDNN through this module: GOMP_SPINCOUNT
is set to SPINCOUNT while the library (and with it libgomp, which reads it once) loads — unless the
environment sets GOMP_SPINCOUNT or OMP_WAIT_POLICY, or libgomp was loaded before (PyTorch brings its
own copy under the same name: after `import torch` oneDNN runs on it, with PyTorch's spin).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os

from minigrad import primitives

_NAMES = ("libdnnl.so.3", "libdnnl.so.2")
_loaded = None  # the library's name, its dnnl_sgemm and its OpenMP's (set, get) thread count, or False
SPINCOUNT = "10000"  # GNU OpenMP's spins before an idle thread sleeps: through a kernel's steps, ~0.1–1.5 ms


def available():
    """Whether float32 products go through oneDNN in this process (looked up once)."""
    return bool(_load())


def library():
    """The name of the oneDNN library float32 products go through, or None."""
    return _load()[0] if _load() else None


def _load():
    global _loaded
    if _loaded is None:
        _loaded = _find() or False
    return _loaded


def _find():
    if os.environ.get("MINIGRAD_ONEDNN", "1") == "0":
        return None
    import llvmlite.binding as llvm
    for name in _candidates():
        try:
            with _short_spin():
                lib = ctypes.CDLL(name)
            fn = lib.dnnl_sgemm
            llvm.load_library_permanently(name)  # the kernels' calls to dnnl_sgemm resolve by name, cached code too
        except (OSError, AttributeError, RuntimeError):  # not there, no such symbol, LLVM could not load it
            continue
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        fn.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, ctypes.c_float, ptr, i64, ptr, i64,
                       ctypes.c_float, ptr, i64]
        fn.restype = ctypes.c_int
        from .blas import matmul2d
        primitives.large_float32_matmul = functools.partial(matmul2d, pooled=False)  # the engine's products too
        return name, fn, _openmp(lib)
    return None


@contextlib.contextmanager
def _short_spin():
    ours = "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
    if ours:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        yield
    finally:
        if ours:  # only libgomp's reading of it was meant: the process's environment is left as it was
            os.environ.pop("GOMP_SPINCOUNT", None)


def _openmp(lib):
    """The (set, get) of the thread count of the OpenMP runtime `lib` runs on, or None (a build on
    another runtime): found through the library's own handle, which searches what it links."""
    try:
        set_, get = lib.omp_set_num_threads, lib.omp_get_max_threads
    except AttributeError:
        return None
    set_.argtypes, set_.restype, get.argtypes, get.restype = [ctypes.c_int], None, [], ctypes.c_int
    return set_, get


def limits_threads():
    """Whether one_thread can keep oneDNN's calls from a thread on that thread."""
    return bool(_load()) and _load()[2] is not None


@contextlib.contextmanager
def one_thread():
    """oneDNN's calls from this thread on this thread alone for the duration.  OpenMP's thread count
    is a setting of each thread: other threads' calls keep theirs.  Loads nothing: where the library
    is not loaded yet, nothing of oneDNN's runs (a float64 split call)."""
    omp = _loaded[2] if _loaded else None
    if omp is None:
        yield
        return
    set_, get = omp
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def _candidates():
    yield from _NAMES
    found = ctypes.util.find_library("dnnl")  # runs ldconfig: only when the usual names are not there
    if found:
        yield found


def sgemm(a, b, out, ta, tb):
    """out = op(a) @ op(b) for C-contiguous float32 arrays, op a transpose where ta / tb."""
    M, N = out.shape
    K = a.shape[0] if ta else a.shape[1]
    status = _load()[1](b"T" if ta else b"N", b"T" if tb else b"N", M, N, K, 1.0, a.ctypes.data, a.shape[1],
                        b.ctypes.data, b.shape[1], 0.0, out.ctypes.data, N)
    if status != 0:
        raise RuntimeError(f"oneDNN's dnnl_sgemm failed (status {status}) on ({M}, {K}) @ ({K}, {N}); "
                           "MINIGRAD_ONEDNN=0 runs float32 on OpenBLAS")
