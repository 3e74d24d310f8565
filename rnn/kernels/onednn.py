"""oneDNN's float32 GEMM, `dnnl_sgemm`, where the system has the library (Debian: libdnnl2).

On this project's machines it runs an LSTM's six float32 products 13–25% faster than OpenBLAS
(docs/performance.md, "oneDNN's GEMM"), and it is what PyTorch's fused float32 LSTM runs on.  Every
large float32 product of the process then goes through it — the kernels' per-step products
(rnn.kernels.helpers.matmul_onednn, a call Numba links by name), the GEMMs around them
(rnn.kernels.blas) and the engine's own matmuls (minigrad.primitives.large_float32_matmul, set when
the library loads) — because oneDNN's OpenMP threads and OpenBLAS's beside them made a run 1.5–2×
slower.  Without the library, or with MINIGRAD_ONEDNN=0, float32 goes through OpenBLAS as float64
always does.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

from minigrad import primitives

_NAMES = ("libdnnl.so.3", "libdnnl.so.2")
_loaded = None  # the library's name and its dnnl_sgemm through ctypes, or False


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
            fn = ctypes.CDLL(name).dnnl_sgemm
            llvm.load_library_permanently(name)  # the kernels' calls to dnnl_sgemm resolve by name, cached code too
        except (OSError, AttributeError, RuntimeError):  # not there, no such symbol, LLVM could not load it
            continue
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        fn.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, ctypes.c_float, ptr, i64, ptr, i64,
                       ctypes.c_float, ptr, i64]
        fn.restype = ctypes.c_int
        from .blas import matmul2d
        primitives.large_float32_matmul = functools.partial(matmul2d, pooled=False)  # the engine's products too
        return name, fn
    return None


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

