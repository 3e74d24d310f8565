"""Scratch arrays reused from call to call: the kernels' arrays and large gradient buffers.

Fresh large arrays are fresh pages that the operating system zeroes on first
touch; reusing a buffer nothing refers to any more avoids that (for an LSTM at
float64 (100, 64, 256, 256) the page clearing had been a third of the time).
Every array handed out is a view of a pooled flat buffer (NumPy views keep
their base alive), so a buffer the pool alone refers to is free to reuse —
however long a caller keeps what it was given.
"""
from __future__ import annotations

import math
import sys

import numpy as np

_POOL: dict = {}          # (length, dtype) -> [(flat buffer, its address)]: what is handed out are views of them
_POOL_MAX_BYTES = 1 << 30  # past this, allocate without pooling
_pool_bytes = 0


def _buffer(n, dtype):
    """(a flat buffer of n elements, its address), reused from an earlier call when nothing refers
    to the buffer any more.  The address is kept beside it: reading it off __array_interface__
    cost 1 us a call."""
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


_SMALL_BYTES = 1 << 16
_DTYPES = {np.float32: np.dtype(np.float32), np.float64: np.dtype(np.float64)}


def staggered(shape, dtype, k, zero=False):
    """A C-contiguous array (a view of a pooled buffer) starting at a different 64-byte line of
    a 4 KiB page for each k, so the dozen arrays a fused loop streams through do not all map
    to the same cache sets.  Under 64 KiB a plain np.empty: malloc serves it without fresh pages,
    in a fifth of the pool's time (0.2 against 1 us), which counts in a small model's call."""
    dtype = _DTYPES.get(dtype) or np.dtype(dtype)
    size = dtype.itemsize
    n = math.prod(shape)  # np.prod costs ~3 us per call, and there are ~20 calls per run
    if n * size < _SMALL_BYTES:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
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




def zeros(shape, dtype):
    """Zeros, from the pool when large (a gradient scattered into a large array: getitem's adjoint)."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < 1 << 18:
        return np.zeros(shape, dtype)
    return staggered(shape, dtype, 2, zero=True)
