"""2-d matrix products through Numba's BLAS, for the GEMMs around the kernels.

The kernels' per-step np.dot runs on the OpenBLAS that SciPy ships (Numba binds
it); NumPy's `@` runs on NumPy's own OpenBLAS.  Two thread pools on two cores
spin against each other: a GEMM right after a kernel ran up to 10x slower.  So the
hoisted input products and the weight gradients go through the same BLAS as the
kernels.  Operands are passed C-contiguous with transposes done inside, so each
helper compiles once per dtype.
"""
from __future__ import annotations

import math
import sys

import numpy as np
from numba import njit


@njit(cache=True)
def _nn(a, b, out):
    np.dot(a, b, out)


@njit(cache=True)
def _tn(a, b, out):
    np.dot(a.T, b, out)


@njit(cache=True)
def _nt(a, b, out):
    np.dot(a, b.T, out)


@njit(cache=True)
def _tt(a, b, out):
    np.dot(a.T, b.T, out)


# OpenBLAS kernels with small-matrix GEMM paths (no packing): with them a per-step product of
# 4 or more batch rows ran 1.4-3x faster through BLAS than through the generated loops, and
# even 2 rows broke even (SkylakeX on an AVX-512 EPYC; `minigrad bench` prints the kernel).
# Without them (e.g. Haswell, AVX2 only) the loops won up to 16 rows.
_SMALL_GEMM = {"skylakex", "cooperlake", "sapphirerapids"}
_blas_rows = None


def blas_rows():
    """From how many batch rows on the kernels' per-step products go through BLAS."""
    global _blas_rows
    if _blas_rows is None:
        arch = blas_kernel()
        _blas_rows = 4 if arch and arch.lower() in _SMALL_GEMM else 32
    return _blas_rows


def blas_kernel():
    """The name of the OpenBLAS kernel Numba's np.dot runs on (SciPy's BLAS), or None if not OpenBLAS."""
    import scipy.linalg.cython_blas  # noqa: F401  loaded before threadpoolctl looks
    from threadpoolctl import threadpool_info
    try:
        libs = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    except Exception:  # an introspection failure must not stop a run; the default cut-over is safe
        return None
    mine = [i for i in libs if "scipy.libs" in i["filepath"] or "/scipy/" in i["filepath"]] or libs
    return mine[0].get("architecture") if mine else None


_POOL: dict = {}          # (length, dtype) -> [(flat buffer, its address)]: the kernels' arrays are views of them
_POOL_MAX_BYTES = 1 << 30  # past this, allocate without pooling
_pool_bytes = 0


def _buffer(n, dtype):
    """(a flat buffer of n elements, its address), reused from an earlier call when nothing refers
    to the buffer any more.

    Fresh large arrays are fresh mmaps whose pages the kernel zeroes on first touch:
    for LSTM float64 (100, 64, 256, 256) that page clearing was a third of the time.
    Every array handed out is a view of its buffer (numpy views keep their base),
    so a buffer only the pool refers to is free to reuse.  The address is kept beside
    it: reading it off __array_interface__ cost 1 us a call."""
    global _pool_bytes
    key = (n, dtype)
    bufs = _POOL.setdefault(key, [])
    for entry in bufs:
        buf = entry[0]
        if sys.getrefcount(buf) == 3:  # the entry, `buf`, getrefcount's argument: no array uses it
            return entry
    buf = np.empty(n, dtype)
    entry = (buf, buf.__array_interface__["data"][0])
    if len(bufs) < 4 and _pool_bytes + buf.nbytes <= _POOL_MAX_BYTES:
        bufs.append(entry)
        _pool_bytes += buf.nbytes
    return entry


_DTYPES = {np.float32: np.dtype(np.float32), np.float64: np.dtype(np.float64)}


def staggered(shape, dtype, k, zero=False):
    """A C-contiguous array (a view of a pooled buffer) starting at a different 64-byte line of
    a 4 KiB page for each k, so the dozen arrays a fused loop streams through do not all map
    to the same cache sets."""
    dtype = _DTYPES.get(dtype) or np.dtype(dtype)
    size = dtype.itemsize
    n = math.prod(shape)  # np.prod costs ~3 us per call, and there are ~20 calls per run
    line = 64 // size
    shift = (k * 17 % 64) * line
    buf, address = _buffer(n + shift + line, dtype)
    start = shift + (-address % 64) // size
    out = buf[start:start + n].reshape(shape)
    if zero:
        out.fill(0)
    return out


def carve_plan(shapes, dtype, ks):
    """Where `carve` puts arrays of these shapes in one buffer: array i starts at 64-byte line
    ks[i] * 17 % 64 of a 4 KiB page, as `staggered` would place it.
    (buffer length, [(offset, length, shape)]) in elements, offsets from a 4 KiB boundary."""
    size = np.dtype(dtype).itemsize
    cursor, where = 0, []
    for shape, k in zip(shapes, ks):
        n = math.prod(shape)
        want = (k * 17 % 64) * 64
        cursor += (want - cursor) % 4096
        where.append((cursor // size, n, shape))
        cursor += n * size
    return (cursor + 4096) // size + 1, where


def carve(plan, dtype):
    """The arrays of a `carve_plan`, views of one pooled buffer: one pool lookup instead of one per array."""
    total, where = plan
    buf, address = _buffer(total, dtype)
    base = (-address % 4096) // buf.itemsize
    return [buf[base + o:base + o + n].reshape(shape) for o, n, shape in where]


_PICK = {(False, False): _nn, (True, False): _tn, (False, True): _nt, (True, True): _tt}


def _c_or_transposed(m):
    """(C-contiguous array, whether it is the transpose of `m`)."""
    if m.flags.c_contiguous:
        return m, False
    if m.flags.f_contiguous:
        return m.T, True
    return np.ascontiguousarray(m), False


def matmul2d(a, b):
    """a @ b for 2-d float arrays of one dtype."""
    m, n = a.shape[0], b.shape[1]
    a, ta = _c_or_transposed(a)
    b, tb = _c_or_transposed(b)
    out = staggered((m, n), a.dtype, 0)
    _PICK[ta, tb](a, b, out)
    return out
