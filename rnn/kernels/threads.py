"""When a kernel call splits the batch between workers, and how many.

A cell whose batch rows never read each other (rnn.kernels.emit: no nd value, no context; the module
says ROWS_INDEPENDENT) may run each kernel call as n blocks of rows, each block the whole loop over
time on a thread of its own (the kernels release the GIL), so the workers never wait for each
other: forward_rows / backward_rows over rows b0..b1-1.  Only the engine values' gradients are sums
over the batch: each block adds into its own copy, summed after.  Plain threads (rnn.kernels.handoff),
not Numba's prange: they watch for the next task for ~2 ms, yielding their core, then sleep, where
OpenMP's spin.

It pays where each block's per-step products run on the block's thread — in the generated loops (W
in L2), on OpenBLAS, or in float32 kernels on oneDNN (rnn.kernels.onednn) called on that thread alone:
two cores then do the products and the element-wise loops that the BLAS's two threads and one core
did — while every recurrent weight is small enough for both blocks to read it from L3 at every step
(SPLIT_WEIGHT_BYTES, Prepared.weight_bytes), and only if nothing else spins on
the second core: a BLAS's idle worker, after a GEMM on two threads, spins for a while.  So during a
split call the kernels' OpenBLAS runs on one thread and the GEMMs around the kernels are split in two
as well (rnn.kernels.blas.matmul2d(split=True)).  docs/performance.md has the numbers.

    MINIGRAD_KERNEL_THREADS   blocks per kernel call (default: 2 on a machine with 2 cores or more; 1 never splits)
    MINIGRAD_SPLIT_BATCH      the smallest batch that is split (default 32)
    set_threads(n, min_batch) the same from Python, for this process
"""
from __future__ import annotations

import os

import numpy as np

from . import handoff, onednn
from .helpers import SPLIT_BLOCK

SPLIT_BATCH = 32
_threads, _min_batch = None, None
_blas = None  # threadpoolctl's controller of the kernels' OpenBLAS, False when there is none


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a whole number") from None


def set_threads(n=None, min_batch=None):
    """Workers per kernel call (1: never split) and the smallest batch that is split, for this
    process; None leaves a setting as it is (the environment's, or the default)."""
    global _threads, _min_batch
    if n is not None:
        if int(n) < 1:
            raise ValueError(f"set_threads: n = {n}, expected at least 1")
        _threads = int(n)
    if min_batch is not None:
        _min_batch = int(min_batch)


def threads():
    """The workers a split kernel call uses: the setting, else 2 where there are 2 cores or more."""
    if _threads is not None:
        return _threads
    return max(1, _env_int("MINIGRAD_KERNEL_THREADS", 2 if len(os.sched_getaffinity(0)) >= 2 else 1))


def min_batch():
    return _min_batch if _min_batch is not None else _env_int("MINIGRAD_SPLIT_BATCH", SPLIT_BATCH)


def workers(batch):
    """How many blocks of rows a kernel call over `batch` rows splits into: 1 (the serial kernels)
    below the threshold, else the setting, at most one per row.  (More blocks than Numba has threads
    still compute the same, a few blocks per thread.)"""
    if batch < min_batch():
        return 1
    return max(1, min(threads(), batch))


class one_blas_thread:
    """The kernels' OpenBLAS on one thread for the duration (of a split kernel call)."""

    def __enter__(self):
        lib = _blas_controller()
        self.before = lib.num_threads if lib else None
        if self.before and self.before != 1:
            lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.before and self.before != 1:
            _blas_controller().set_num_threads(self.before)


def _blas_controller():
    """The kernels' OpenBLAS (rnn.kernels.blas.kernels_openblas), looked up once; None if there is none."""
    global _blas
    if _blas is None:
        from .blas import kernels_openblas
        _blas = kernels_openblas() or False
    return _blas or None


# Each block of a split call reads every recurrent weight whole at every step, from the shared L3;
# past 8 MiB (a quarter of this machine's) the blocks wait on it: LSTM float32 at H = 1024 (16 MiB)
# split was 5% slower, at H = 768 (9.4 MiB) 3% faster, at H = 512 (4 MiB) 2.5% (docs/performance.md).
SPLIT_WEIGHT_BYTES = 8 << 20


def splits(prep, B):
    """Whether a call of prepared kernels over B rows splits them between workers."""
    return (B > 1 and prep.weight_bytes <= SPLIT_WEIGHT_BYTES and (not prep.layout.onednn or onednn.limits_threads())
            and workers(B) > 1 and getattr(prep.module, "ROWS_INDEPENDENT", False))


def run_kernel(module, name, T, B, dims, consts, args, summed=(), split=False, then=None):
    """module.<name>(T, B, dims, consts, *args), or, `split` (see splits), <name>_rows over
    workers(B) blocks of rows at once.  summed: the indices of args that are sums over the batch
    (each block gets its own zeroed copy, added in after).  then(b0, b1): run after the kernel on
    rows b0..b1 — in a split call by each block on its own rows, while they are in its core's cache."""
    if not split:
        getattr(module, name)(T, B, dims, consts, *args)
        if then is not None:
            then(0, B)
        return
    n = workers(B)
    rows = getattr(module, name + "_rows")
    bounds = [c * B // n for c in range(n + 1)]
    parts = {i: np.zeros((n,) + args[i].shape, args[i].dtype) for i in summed}
    dims = dims.copy()
    dims[-1] = SPLIT_BLOCK  # a block's per-step products: the generated loops where W fits in L2, else BLAS, on its thread

    def block(c):
        own = list(args)
        for i, p in parts.items():
            own[i] = p[c]
        with onednn.one_thread():
            rows(T, B, bounds[c], bounds[c + 1], dims, consts, *own)
        if then is not None:
            then(bounds[c], bounds[c + 1])

    with one_blas_thread():
        rest = [handoff.crew(n - 1).submit(block, c) for c in range(1, n)]
        try:
            block(0)
        finally:
            for f in rest:
                f.result()
    for i, p in parts.items():
        args[i] += p.sum(axis=0)


def in_two(first, second):
    """first() on a worker and second() on this thread, at once; returns when both have."""
    f = handoff.crew(1).submit(first)
    try:
        second()
    finally:
        f.result()
