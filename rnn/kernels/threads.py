"""When a kernel call splits the batch between workers, and how many.

A cell whose batch rows never read each other (rnn.kernels.emit: no nd value, no context; the module
says ROWS_INDEPENDENT) may run each kernel call as n blocks of rows, each block the whole loop over
time on a thread of its own (the kernels release the GIL), so the workers never wait for each
other: forward_rows / backward_rows over rows b0..b1-1.  Only the engine values' gradients are sums
over the batch: each block adds into its own copy, summed after.  Plain threads, not Numba's
prange: those threads sleep between calls, where OpenMP's spin and took a core from the BLAS GEMMs
around the kernels.

It was meant to pay at large batches, where each step's product and element-wise loop are long
enough to fill a core; on the 2-core machine it did not (not yet explained; most likely the per-step
products, one OpenBLAS thread on half the rows each against two on all of them: docs/performance.md),
so it is off unless asked for, and
below a batch size even then (a second worker only adds its start-up, and competes for a core on a
busy machine):

    MINIGRAD_KERNEL_THREADS   blocks per kernel call (default 1: never split; see threads())
    MINIGRAD_SPLIT_BATCH      the smallest batch that is split (default 32)
    set_threads(n, min_batch) the same from Python, for this process

While the blocks run, the kernels' BLAS (the per-step products inside them) runs on one thread:
each worker's product is its own, and two workers each asking OpenBLAS for every core ran 10-100x
slower (measured with another process busy).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SPLIT_BATCH = 32
_threads, _min_batch = None, None
_blas = None  # threadpoolctl's controller of the kernels' OpenBLAS, False when there is none
_pool = None  # the worker threads of blocks 1..n-1 (block 0 runs on the caller's)


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
    """The workers a split kernel call uses: 1 (no split) unless asked for.  Measured on the 2-core
    machine, two blocks of 16-32 rows made the float32 LSTM at B >= 32 1.2-1.4x slower than one
    call whose per-step products OpenBLAS runs on both cores (docs/performance.md), so it is opt-in."""
    if _threads is not None:
        return _threads
    return max(1, _env_int("MINIGRAD_KERNEL_THREADS", 1))


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
    """threadpoolctl's controller of the OpenBLAS Numba's np.dot runs on (SciPy's), or None."""
    global _blas
    if _blas is None:
        _blas = False
        try:
            import scipy.linalg.cython_blas  # noqa: F401  loaded before threadpoolctl looks
            from threadpoolctl import ThreadpoolController
            libs = [c for c in ThreadpoolController().lib_controllers if c.internal_api == "openblas"]
            mine = [c for c in libs if "scipy.libs" in c.filepath or "/scipy/" in c.filepath] or libs
            _blas = mine[0] if mine else False
        except Exception:  # no introspection: the split kernels still run, BLAS as it is
            _blas = False
    return _blas or None


def run_kernel(module, name, T, B, dims, consts, args, summed=()):
    """module.<name>(T, B, dims, consts, *args), or, where the module's rows are independent and
    `workers(B)` > 1, <name>_rows over that many blocks of rows at once.  summed: the indices of
    args that are sums over the batch (each block gets its own zeroed copy, added in after)."""
    n = workers(B) if getattr(module, "ROWS_INDEPENDENT", False) else 1
    if n == 1:
        getattr(module, name)(T, B, dims, consts, *args)
        return
    rows = getattr(module, name + "_rows")
    bounds = [c * B // n for c in range(n + 1)]
    parts = {i: np.zeros((n,) + args[i].shape, args[i].dtype) for i in summed}

    def block(c):
        own = list(args)
        for i, p in parts.items():
            own[i] = p[c]
        rows(T, B, bounds[c], bounds[c + 1], dims, consts, *own)

    with one_blas_thread():
        rest = [_workers(n - 1).submit(block, c) for c in range(1, n)]
        try:
            block(0)
        finally:
            for f in rest:
                f.result()
    for i, p in parts.items():
        args[i] += p.sum(axis=0)


def _workers(k):
    global _pool
    if _pool is None or _pool._max_workers < k:
        _pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="minigrad-kernel")
    return _pool
