"""2-d matrix products through Numba's BLAS, for the GEMMs around the kernels (their buffers come
from minigrad.buffers).

The kernels' per-step np.dot runs on the OpenBLAS that SciPy ships (Numba binds
it); NumPy's `@` runs on NumPy's own OpenBLAS.  Two thread pools on two cores
spin against each other (docs/performance.md has the numbers).  So the
hoisted input products and the weight gradients go through the same BLAS as the
kernels.  Operands are passed C-contiguous with transposes done inside, so each
helper compiles once per dtype.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

from minigrad.buffers import carve, carve_plan, staggered  # noqa: F401  (the kernels' arrays)
from minigrad.primitives import LARGE_FLOAT32_WORK

from . import onednn
from .threads import in_two, one_blas_thread


@njit(cache=True, nogil=True)
def _nn(a, b, out):
    np.dot(a, b, out)


@njit(cache=True, nogil=True)
def _tn(a, b, out):
    np.dot(a.T, b, out)


@njit(cache=True, nogil=True)
def _nt(a, b, out):
    np.dot(a, b.T, out)


@njit(cache=True, nogil=True)
def _tt(a, b, out):
    np.dot(a.T, b.T, out)


# OpenBLAS kernels with small-matrix GEMM paths (no packing): with them BLAS beats the generated
# loops from 4 batch rows, without them only from about 16 (docs/performance.md).
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
    lib = kernels_openblas()
    return lib.architecture if lib else None


def kernels_openblas():
    """threadpoolctl's controller of the OpenBLAS Numba's np.dot runs on (SciPy's), or None: not
    OpenBLAS, or the loaded libraries could not be read (a run goes on with the safe defaults)."""
    import scipy.linalg.cython_blas  # noqa: F401  loaded before threadpoolctl looks
    from threadpoolctl import ThreadpoolController
    try:
        libs = [c for c in ThreadpoolController().lib_controllers if c.internal_api == "openblas"]
    except Exception:
        return None
    mine = [c for c in libs if "scipy.libs" in c.filepath or "/scipy/" in c.filepath] or libs
    return mine[0] if mine else None


_PICK = {(False, False): _nn, (True, False): _tn, (False, True): _nt, (True, True): _tt}


def c_or_transposed(m):
    """(C-contiguous array, whether it is the transpose of `m`)."""
    if m.flags.c_contiguous:
        return m, False
    if m.flags.f_contiguous:
        return m.T, True
    return np.ascontiguousarray(m), False


def transposed(a, k=None):
    """a.T, C-contiguous, for 2-d `a` (a recurrent weight as the per-step products read it): in tiles
    of 16 x 16, 4x faster than NumPy's copy of a 2048 x 512 a.T (0.8 against 3.3 ms in float32).
    k: where in a page it starts (minigrad.buffers.staggered), at any size: a second weight that each
    step reads beside the first must not share the first's cache sets."""
    if a.flags.f_contiguous:  # a.T is already C-contiguous
        return a.T
    if k is None and a.size < 1 << 16:  # NumPy's copy is as fast there, without the pool lookup and the dispatch
        return np.ascontiguousarray(a.T)
    out = staggered(a.shape[::-1], a.dtype, 3 if k is None else k)
    _transpose(np.ascontiguousarray(a), out)
    return out


@njit(cache=True, nogil=True)
def _transpose(a, out):
    R, C = a.shape
    for i0 in range(0, R, 16):
        i1 = min(R, i0 + 16)
        for j0 in range(0, C, 16):
            j1 = min(C, j0 + 16)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    out[j, i] = a[i, j]


_SPLIT_WORK = 1 << 22  # multiply-adds: ~80 us on one thread


def matmul2d(a, b, split=False, pooled=True):
    """a @ b for 2-d float arrays of one dtype.  split: in two halves at once, on the caller's thread
    and one worker (rnn.kernels.threads), each on one OpenBLAS thread: by rows of `a` where they are
    rows in memory, else over the inner dimension, the two partial products added.  float32 products
    from LARGE_FLOAT32_WORK multiply-adds go through oneDNN's sgemm where the process has it
    (rnn.kernels.onednn), split the same way with each half's call on its thread alone; below that
    OpenBLAS runs them, where oneDNN's call cost more.  pooled: the result is a pooled scratch array
    (minigrad.buffers), else a new one (the engine's, which it keeps as an op's output)."""
    return matmuls2d([(a, b)], split, pooled)[0]


def matmuls2d(pairs, split=False, pooled=True):
    """[a @ b for a, b in pairs], as matmul2d computes each; split: all of them in one hand-off, the
    worker taking every product's first half and the caller every second half (a hand-off costs
    ~70 us: a kernel's backward has three products, its input's and its two weights' gradients)."""
    products = [_Product(a, b, split, pooled) for a, b in pairs]
    for p in products:
        if p.alone:
            p.whole()
    rest = [p for p in products if not p.alone]
    if rest:
        with one_blas_thread():  # even unsplit: OpenBLAS's second thread would spin through the split kernels
            firsts = [p.first for p in rest if p.first is not None]
            seconds = [p.second or p.whole for p in rest]
            if firsts:
                in_two(lambda: _each(firsts), lambda: _each(seconds))
            else:
                _each(seconds)
        for p in rest:
            if p.other is not None:
                p.out += p.other
    return [p.out for p in products]


def _each(calls):
    for c in calls:
        c()


class _Product:
    """One product of matmuls2d: its result array and how it is computed — whole (`alone`: on the
    caller with the library's own threads), or `first` and `second` halves (out, or out and `other`
    to add), or, below a hand-off's worth, whole among the halves."""

    def __init__(self, a, b, split, pooled):
        m, n = a.shape[0], b.shape[1]
        a, ta = c_or_transposed(a)
        b, tb = c_or_transposed(b)
        out = self.out = staggered((m, n), a.dtype, 0) if pooled else np.empty((m, n), a.dtype)
        k = b.shape[1] if tb else b.shape[0]
        if a.dtype == np.float32 and m * n * k >= LARGE_FLOAT32_WORK and onednn.available():
            split = split and onednn.limits_threads()
            pick = functools.partial(_onednn, ta=ta, tb=tb, alone=split)
        else:
            pick = _PICK[ta, tb]
        self.whole = functools.partial(pick, a, b, out)
        self.alone, self.first, self.second, self.other = not split, None, None, None
        if not split or m * n * k < _SPLIT_WORK or min(m, k) < 2:  # a worker's hand-off costs ~70 us
            return
        if not ta:  # a (m, k) row-major: halves of its rows make halves of out's rows
            h = m // 2
            self.first = functools.partial(pick, a[:h], b, out[:h])
            self.second = functools.partial(pick, a[h:], b, out[h:])
        else:  # a holds the (k, m) transpose: halves of k, the two products added
            h = k // 2
            other = self.other = np.empty_like(out)
            bh, bt = (np.ascontiguousarray(b[:, :h]), np.ascontiguousarray(b[:, h:])) if tb else (b[:h], b[h:])
            self.first = functools.partial(pick, a[:h], bh, out)
            self.second = functools.partial(pick, a[h:], bt, other)


def _onednn(a, b, out, ta, tb, alone):
    if not alone:
        onednn.sgemm(a, b, out, ta, tb)
        return
    with onednn.one_thread():
        onednn.sgemm(a, b, out, ta, tb)


def one_hot_rows(a):
    """The column of the single 1 in each row of `a` (2-d float) when every row is one-hot, else None: a
    product with such rows is a gather of the other operand's rows (a char-level model's input)."""
    if a.shape[1] < _ONE_HOT_MIN or not a.shape[0]:
        return None
    idx = np.empty(a.shape[0], np.intp)
    return idx if _find_ones(np.ascontiguousarray(a), idx) else None


@njit(cache=True)
def _find_ones(a, idx):
    for r in range(a.shape[0]):
        idx[r] = -1
        for c in range(a.shape[1]):
            v = a[r, c]
            if v != 0:
                if v != 1 or idx[r] >= 0:
                    return False
                idx[r] = c
        if idx[r] < 0:
            return False
    return True


_ONE_HOT_MIN = 16  # narrower rows: the product is as cheap as looking


def gather_rows(idx, b):
    """onehot(idx) @ b: b's rows picked out — what the product gives wherever b is finite (1 * b[i] plus
    zeros; the product would make an inf elsewhere in b's column a NaN)."""
    return np.ascontiguousarray(b[idx])


@njit(cache=True)
def _add_rows(idx, g, out):
    for r in range(idx.shape[0]):
        out[idx[r]] += g[r]


def scatter_rows(idx, g, rows):
    """onehot(idx).T @ g, (rows, g's width): each row of g added into the row idx names."""
    out = np.zeros((rows, g.shape[1]), g.dtype)
    _add_rows(idx, np.ascontiguousarray(g), out)
    return out
