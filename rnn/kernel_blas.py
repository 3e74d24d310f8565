"""2-d matrix products through Numba's BLAS, for the GEMMs around the kernels.

The kernels' per-step np.dot runs on the OpenBLAS that SciPy ships (Numba binds
it); NumPy's `@` runs on NumPy's own OpenBLAS.  Two thread pools on two cores
spin against each other: a GEMM right after a kernel ran up to 10x slower.  So the
hoisted input products and the weight gradients go through the same BLAS as the
kernels.  Operands are passed C-contiguous with transposes done inside, so each
helper compiles once per dtype.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _nn(a, b):
    return np.dot(a, b)


@njit(cache=True)
def _tn(a, b):
    return np.dot(a.T, b)


@njit(cache=True)
def _nt(a, b):
    return np.dot(a, b.T)


@njit(cache=True)
def _tt(a, b):
    return np.dot(a.T, b.T)


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
    a, ta = _c_or_transposed(a)
    b, tb = _c_or_transposed(b)
    return _PICK[ta, tb](a, b)
