"""The fixed Numba helpers every generated kernel calls: the scalar tanh and sigmoid of each dtype,
and the per-step product.  The generated source imports the ones it uses (rnn.kernels.emit picks
them); the hash of this file is part of every generated source, so a change here gives new
kernels, never stale cached code (Numba's cache does not follow calls into other files).

    tanh_exact, sigmoid_exact   libm's tanh and exp, as the engine computes them
    tanh_f32, sigmoid_f32       float32: a rational approximation within a few ulps, no call
    tanh_f64, sigmoid_f64       float64: call-free exp within ~5e-16 of libm, no call
    matmul(h, W, out, rows)     out = h @ W for one step: loops over W while it fits in L2, else BLAS
    matmul_onednn               the same, float32 BLAS products through oneDNN (rnn.kernels.onednn)
    fill, copy, add             a[:] = v, a[:] = b, a += b over 1-d views, for a whole training step
                                (rnn.kernels.training): an array assignment takes Numba seconds to compile

Why the call-free forms and the loop product: see docs/performance.md.
"""
import math

import numpy as np
from numba import njit, types

# "contract": a * b + c may become one fused multiply-add (one rounding instead of two, so
# never less accurate); the products' inner loops and the gate math run on fma instructions.
# nogil: rnn.kernels.threads runs blocks of batch rows of one kernel call on two threads at once.
jit = njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@jit
def tanh_exact(a, one):
    return math.tanh(a)


@jit
def sigmoid_exact(a, one):
    # the engine's form: exp of a non-positive number never overflows
    e = math.exp(-abs(a))
    s = one / (one + e)
    return s if a >= 0 else e * s


@jit
def tanh_f32(a, one):
    x = min(max(a, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@jit
def sigmoid_f32(a, one):
    half = np.float32(0.5)
    return half + half * tanh_f32(half * a, one)


# exp(y) = 2**n * exp(r), y = n ln2 + r, |r| <= ln2/2: ln2 in two parts (Cody-Waite) keeps r
# exact to double precision; exp(r) - 1 is a degree-13 Taylor polynomial (truncation
# below 2e-17 relative); 2**n is built from its bits as 2**(n + 64) * 2**-64, so that
# n down to -1075 (subnormal results) stays exact.  Why bits and Estrin's order: docs/performance.md.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 to 32 bits: n * _LN2_HI is exact (fdlibm's split)
_LN2_LO = 1.9082149292705877e-10


@jit
def _expm1_parts(y):
    # y <= 0: (2**n, exp(r) - 1) with exp(y) = 2**n * (1 + (exp(r) - 1)); no libm call, so
    # loops using it vectorise
    y = max(y, -745.0)
    n = math.floor(y * _INV_LN2 + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO
    # p = sum of r**k / (k + 1)! for k = 0..12 in Estrin's order: a dependency chain of 4 fmas,
    # where Horner's had 12
    r2 = r * r
    r4 = r2 * r2
    q0 = 1.0 + r * 0.5
    q1 = 1.0 / 6.0 + r * (1.0 / 24.0)
    q2 = 1.0 / 120.0 + r * (1.0 / 720.0)
    q3 = 1.0 / 5040.0 + r * (1.0 / 40320.0)
    q4 = 1.0 / 362880.0 + r * (1.0 / 3628800.0)
    q5 = 1.0 / 39916800.0 + r * (1.0 / 479001600.0)
    p = (q0 + r2 * q1) + r4 * ((q2 + r2 * q3) + r4 * ((q4 + r2 * q5) + r4 * (1.0 / 6227020800.0)))
    scale = np.int64((n + 1087) << 52).view(np.float64) * 5.421010862427522e-20  # * 2**-64
    return scale, r * p


@jit
def tanh_f64(a, one):
    # tanh|a| = -m / (m + 2) with m = exp(-2|a|) - 1: no cancellation near 0
    s, q = _expm1_parts(-2.0 * abs(a))
    m = s * q + (s - 1.0)
    t = -m / (m + 2.0)
    return t if a >= 0 else -t


@jit
def sigmoid_f64(a, one):
    # the engine's form: exp of a non-positive number never overflows
    s, q = _expm1_parts(-abs(a))
    e = s + s * q
    r = one / (one + e)
    return r if a >= 0 else e * r


@jit
def _rows1(h, W, out):
    K = h.shape[0]
    N = W.shape[1]
    k8 = K - K % 8
    for n in range(N):
        out[n] = 0
    for k in range(0, k8, 8):
        a0, a1, a2, a3, a4, a5, a6, a7 = h[k], h[k + 1], h[k + 2], h[k + 3], h[k + 4], h[k + 5], h[k + 6], h[k + 7]
        w0, w1, w2, w3, w4, w5, w6, w7 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4], W[k + 5], W[k + 6], W[k + 7]
        for n in range(N):
            out[n] += ((a0 * w0[n] + a1 * w1[n]) + (a2 * w2[n] + a3 * w3[n])) + \
                      ((a4 * w4[n] + a5 * w5[n]) + (a6 * w6[n] + a7 * w7[n]))
    for k in range(k8, K):
        a0 = h[k]
        w0 = W[k]
        for n in range(N):
            out[n] += a0 * w0[n]


@jit
def _rows2(ha, hb, W, oa, ob):
    K = ha.shape[0]
    N = W.shape[1]
    k8 = K - K % 8
    for n in range(N):
        oa[n] = 0
        ob[n] = 0
    for k in range(0, k8, 8):
        a0, a1, a2, a3, a4, a5, a6, a7 = ha[k], ha[k + 1], ha[k + 2], ha[k + 3], ha[k + 4], ha[k + 5], ha[k + 6], ha[k + 7]
        c0, c1, c2, c3, c4, c5, c6, c7 = hb[k], hb[k + 1], hb[k + 2], hb[k + 3], hb[k + 4], hb[k + 5], hb[k + 6], hb[k + 7]
        w0, w1, w2, w3, w4, w5, w6, w7 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4], W[k + 5], W[k + 6], W[k + 7]
        for n in range(N):
            x0, x1, x2, x3, x4, x5, x6, x7 = w0[n], w1[n], w2[n], w3[n], w4[n], w5[n], w6[n], w7[n]
            oa[n] += ((a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)) + ((a4 * x4 + a5 * x5) + (a6 * x6 + a7 * x7))
            ob[n] += ((c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3)) + ((c4 * x4 + c5 * x5) + (c6 * x6 + c7 * x7))
    for k in range(k8, K):
        a0 = ha[k]
        c0 = hb[k]
        w0 = W[k]
        for n in range(N):
            oa[n] += a0 * w0[n]
            ob[n] += c0 * w0[n]


L2_WEIGHT = 65536  # elements of W up to which the loop product keeps it in L2 (256 KiB in float32)


@jit
def matmul(h, W, out, blas_rows):
    # out = h @ W; h (B, K), W (K, N) and out (B, N) C-contiguous
    B, K = h.shape
    if B >= blas_rows or K * W.shape[1] > L2_WEIGHT:
        np.dot(h, W, out)
        return
    for b in range(0, B - 1, 2):
        _rows2(h[b], h[b + 1], W, out[b], out[b + 1])
    if B % 2:
        _rows1(h[B - 1], W, out[B - 1])


# dnnl_sgemm(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), row-major; pointers passed
# as integers.  Linked by name: rnn.kernels.onednn loads the library before a kernel calls it.
_i64 = types.int64
_dnnl_sgemm = types.ExternalFunction("dnnl_sgemm", types.int32(types.int8, types.int8, _i64, _i64, _i64, types.float32,
                                                               _i64, _i64, _i64, _i64, types.float32, _i64, _i64))


ONEDNN_PRODUCT = 1 << 18  # multiply-adds from which oneDNN's call pays (OpenBLAS's small-matrix kernels below)
SPLIT_BLOCK = 1 << 62  # blas_rows in a block of a split call (rnn.kernels.threads): matmul's products in loops


@jit
def matmul_onednn(h, W, out, blas_rows):
    # matmul for float32 kernels when oneDNN is there: its sgemm, from ONEDNN_PRODUCT multiply-adds, for
    # the products matmul would give OpenBLAS and, in a split call's block (oneDNN there on the block's
    # thread alone), those it would run in the loops
    B, K = h.shape
    N = W.shape[1]
    if B * K * N >= ONEDNN_PRODUCT and (blas_rows == SPLIT_BLOCK or B >= blas_rows or K * N > L2_WEIGHT):
        no = np.int8(78)  # 'N': no transpose
        status = _dnnl_sgemm(no, no, B, N, K, np.float32(1), h.ctypes.data, h.strides[0] // 4, W.ctypes.data,
                             N, np.float32(0), out.ctypes.data, out.strides[0] // 4)
        if status != 0:
            raise RuntimeError("oneDNN's dnnl_sgemm failed in a kernel's per-step product")
    else:
        matmul(h, W, out, blas_rows)


@jit
def fill(a, v):
    for i in range(a.size):
        a[i] = v


@jit
def copy(a, b):
    for i in range(a.size):
        a[i] = b[i]


@jit
def add(a, b):
    for i in range(a.size):
        a[i] += b[i]
