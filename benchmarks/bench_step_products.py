"""A kernel's per-step product h(t) @ W, each way the kernels can run it, timed inside Numba.

    .venv/bin/python benchmarks/bench_step_products.py [--reps N] [--dtype float32|float64]

The shapes are the per-step products of the README's table: a split call's block of 16 rows (B = 32),
the whole batch, and the backward's dA(t) @ W.T.  Ways, µs per product (best of 5 rounds of `reps`
products, in one jitted loop, so no Python call is in the time):

    loops          the generated loops (rnn.kernels.helpers.matmul with W in L2)
    openblas 1t    Numba's np.dot (SciPy's OpenBLAS) on one thread
    onednn 1t      oneDNN's dnnl_sgemm, OpenMP's thread count 1 on the calling thread (a split block's)
    onednn packed  oneDNN's internal packed GEMM: W packed once, then sgemm_compute on every step (what
                   dnnl_sgemm cannot do: it packs W on every call); only where the library exports
                   those symbols (oneDNN 2.x: dnnl::impl::cpu::sgemm_pack / sgemm_compute)
    onednn 2t      dnnl_sgemm on OpenMP's threads (an unsplit call's)

The packed form is what a split block would gain if the kernels passed a packed W: docs/performance.md,
"The split on oneDNN", has what it measured.
"""
import argparse
import ctypes
import time

import numpy as np
from numba import njit, types

from rnn.kernels import onednn
from rnn.kernels.blas import kernels_openblas
from rnn.kernels.helpers import L2_WEIGHT, SPLIT_BLOCK, _dnnl_sgemm, matmul
from rnn.kernels.threads import one_blas_thread

SHAPES = [(16, 128, 512), (32, 128, 512), (16, 512, 128), (16, 64, 256), (16, 128, 128), (16, 128, 256),
          (64, 256, 1024), (32, 256, 1024), (8, 128, 512), (8, 64, 256)]

# oneDNN 2.x's internal packed GEMM (column-major, MKL's ?gemm_pack / ?gemm_compute form)
_PACK_SIZE = "_ZN4dnnl4impl3cpu19sgemm_pack_get_sizeEPKcS3_S3_PKlS5_S5_S5_S5_PmPb"
_PACK = "_ZN4dnnl4impl3cpu10sgemm_packEPKcS3_S3_PKlS5_S5_S5_S5_PKfPf"
_COMPUTE = "_ZN4dnnl4impl3cpu13sgemm_computeEPKcS3_PKlS5_S5_PKfS5_S7_S5_S7_PfS5_"
_i64 = types.int64
_compute = types.ExternalFunction(_COMPUTE, types.int32(*[_i64] * 12))


@njit(nogil=True)
def _loops(h, W, out, reps):
    for _ in range(reps):
        matmul(h, W, out, SPLIT_BLOCK)


@njit(nogil=True)
def _openblas(h, W, out, reps):
    for _ in range(reps):
        np.dot(h, W, out)


@njit(nogil=True)
def _onednn(h, W, out, reps):
    B, K = h.shape
    N = W.shape[1]
    no = np.int8(78)
    for _ in range(reps):
        _dnnl_sgemm(no, no, B, N, K, np.float32(1), h.ctypes.data, K, W.ctypes.data, N, np.float32(0),
                    out.ctypes.data, N)


@njit(nogil=True)
def _packed(h, packed, out, ints, chars, beta, reps):
    # out (B, N) row-major = out.T (N, B) column-major = W.T (N, K) @ h.T (K, B): W is the packed "A"
    p, i, c = packed.ctypes.data, ints.ctypes.data, chars.ctypes.data
    for _ in range(reps):
        _compute(c, c + 1, i, i + 8, i + 16, p, i + 24, h.ctypes.data, i + 32, beta.ctypes.data,
                 out.ctypes.data, i + 40)


def packed_api():
    """(get_size, pack) through ctypes where the loaded oneDNN exports its internal packed GEMM, else None."""
    if not onednn.available():
        return None
    lib = ctypes.CDLL(onednn.library())
    try:
        return getattr(lib, _PACK_SIZE), getattr(lib, _PACK)
    except AttributeError:
        return None


def pack(W, rows, api):
    get_size, pack_fn = api
    K, N = W.shape
    ref = lambda v: ctypes.byref(ctypes.c_int64(v))  # noqa: E731
    size, packs = ctypes.c_size_t(0), ctypes.c_bool(False)
    args = (b"A", b"N", b"N", ref(N), ref(rows), ref(K), ref(N), ref(K))
    if get_size(*args, ctypes.byref(size), ctypes.byref(packs)) != 0:
        raise RuntimeError("sgemm_pack_get_size failed")
    packed = np.empty(size.value // 4 + 1, np.float32)
    if pack_fn(*args, ctypes.c_void_p(W.ctypes.data), ctypes.c_void_p(packed.ctypes.data)) != 0:
        raise RuntimeError("sgemm_pack failed")
    return packed


def best(fn, reps):
    fn(1)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        fn(reps)
        times.append((time.perf_counter() - t) / reps * 1e6)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    reps, dtype = args.reps, np.dtype(args.dtype)
    blas = kernels_openblas()
    api = packed_api()
    print(f"{dtype}; oneDNN (float32 only): {onednn.library() or 'not there'}; packed GEMM: {'yes' if api else 'no'}; "
          f"OpenBLAS kernel: {blas.architecture if blas else '?'}")
    print(f"{'rows,K,N':>14} {'loops':>8} {'openblas 1t':>12} {'onednn 1t':>10} {'onednn packed':>14} {'onednn 2t':>10}"
          "   µs per product")
    rng = np.random.default_rng(0)
    for B, K, N in SHAPES:
        h, W = rng.standard_normal((B, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
        out = np.empty((B, N), dtype)
        want = h.astype(np.float64) @ W.astype(np.float64)
        row = [best(lambda r: _loops(h, W, out, r), reps) if K * N <= L2_WEIGHT else float("nan")]
        with one_blas_thread():
            row.append(best(lambda r: _openblas(h, W, out, r), reps))
        if onednn.available() and dtype == np.float32:
            with onednn.one_thread():
                row.append(best(lambda r: _onednn(h, W, out, r), reps))
                if api:
                    packed = pack(W, B, api)
                    ints = np.array([N, B, K, N, K, N], np.int64)
                    chars, beta = np.frombuffer(b"PN", np.uint8).copy(), np.zeros(1, np.float32)
                    row.append(best(lambda r: _packed(h, packed, out, ints, chars, beta, r), reps))
                    assert np.allclose(out, want, rtol=1e-4, atol=1e-3), "packed product differs"
                else:
                    row.append(float("nan"))
            row.append(best(lambda r: _onednn(h, W, out, r), reps))
        else:
            row += [float("nan")] * 3
        print(f"{f'{B},{K},{N}':>14} {row[0]:8.1f} {row[1]:12.1f} {row[2]:10.1f} {row[3]:14.1f} {row[4]:10.1f}")


if __name__ == "__main__":
    main()
