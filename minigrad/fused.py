"""Loops compiled by Numba where NumPy's passes cost more than the arithmetic: the optimizers' updates
over all parameters in one call (as PyTorch's `foreach`/`fused` optimizers do), the clip's rescaling,
and a linear read-out with its cross-entropy.

NumPy runs `s += g * g; p -= lr * g / (sqrt(s) + eps)` as seven passes over each parameter, each a
Python-level call with its own temporary: for the char-RNN's six small parameters, a step of Adagrad
cost more than the recurrence's kernel.  Here each update is one loop over every element of every
parameter, compiled by Numba (loaded lazily: the engine imports without it), computing each element
with exactly the operations, in the order, that the NumPy expression does — so the results are
bitwise those of the NumPy path (tests/test_optim.py holds them to it).

Clipping by norm rescales all gradients in one such loop (minigrad.clip), bitwise NumPy's `g *= coef`;
its norm is a BLAS dot per gradient (minigrad.clip._l2).

A linear read-out and its cross-entropy (minigrad.primitives.linear_cross_entropy) are two calls: the
forward's product (BLAS) and then each row's softmax (kept for the backward) and loss in one loop; the
backward's softmax-minus-one-hot and its three products (BLAS).  NumPy and the engine take some forty passes
and ops for the same; at the char-RNN's (25, 116) logits that was a quarter of a training step.
They are not bitwise NumPy's: Numba's product runs on SciPy's BLAS, and its exp and log are libm's.

The backward's check that a recorded leaf was not changed in place (minigrad.tensor.check_saved)
compares a large leaf with its copy bit for bit in one such loop.

Only float64 parameters go this way: NumPy computes a float32 parameter's update in float32 (a Python
float is a weak scalar), which a kernel taking float64 hyperparameters would not.  `kernel(name)` is
None when Numba cannot compile or load it here; the optimizers then use NumPy.
"""
from __future__ import annotations

import math

import numpy as np

_KERNELS: dict = {}


def _adagrad_one(p, g, s, lr, eps):
    for i in range(p.size):
        gi = g[i]
        si = s[i] + gi * gi
        s[i] = si
        p[i] -= lr * gi / (math.sqrt(si) + eps)


def _sgd_one(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


def _momentum_one(p, g, buf, lr, momentum):
    for i in range(p.size):
        bi = buf[i] * momentum + g[i]
        buf[i] = bi
        p[i] -= lr * bi


def _adam_one(p, g, m, v, step_size, beta1, beta2, root_bias2, eps):
    """Adam's update as minigrad.optim.Adam's NumPy lines compute it: step_size = lr / (1 - beta1^t),
    root_bias2 = sqrt(1 - beta2^t)."""
    a, c = 1 - beta1, 1 - beta2
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * beta1 + a * gi
        vi = v[i] * beta2 + c * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * mi / (math.sqrt(vi) / root_bias2 + eps)


def _scale_one(g, coef):
    for i in range(g.size):
        g[i] *= coef


def _clamp_one(g, c):
    """np.clip(g, -c, c, out=g) for finite g."""
    for i in range(g.size):
        g[i] = min(max(g[i], -c), c)


def _adagrad(ps, gs, ss, lr, eps):
    for k in range(len(ps)):
        _ADAGRAD_ONE(ps[k], gs[k], ss[k], lr, eps)


def _scale(gs, coef):
    for k in range(len(gs)):
        g = gs[k]
        for i in range(g.size):
            g[i] *= coef


def _linear_nll(X, W, b, y, P, total):
    """total[0] = Σ_i log softmax(X W^T + b)[i, y[i]], and P = softmax(X W^T + b), row by row."""
    O = np.dot(X, W.T)
    acc = 0.0
    for i in range(O.shape[0]):
        m = O[i, 0] + b[0]
        for k in range(O.shape[1]):
            v = O[i, k] + b[k]
            O[i, k] = v
            if v > m:
                m = v
        s = 0.0
        for k in range(O.shape[1]):
            e = math.exp(O[i, k] - m)
            P[i, k] = e
            s += e
        for k in range(O.shape[1]):
            P[i, k] /= s
        acc += O[i, y[i]] - (math.log(s) + m)
    total[0] = acc


def _linear_nll_grad(X, W, P, y, g, dL, dX, dW, db):
    """Gradients of g * Σ_i -log softmax(X W^T + b)[i, y[i]] from P = that softmax (dL: the logits')."""
    for i in range(P.shape[0]):
        for k in range(P.shape[1]):
            dL[i, k] = P[i, k] * g
        dL[i, y[i]] -= g
    np.dot(dL, W, dX)
    np.dot(dL.T, X, dW)
    for k in range(P.shape[1]):
        acc = 0.0
        for i in range(P.shape[0]):
            acc += dL[i, k]
        db[k] = acc


def _same_words(a, b, same):
    """same[0] = whether a and b (1-d unsigned integers, the bits of two arrays) are equal: their XORs
    OR-ed together over the whole length, which vectorises (a loop stopping at the first difference
    does not) — 2.3x faster than NumPy's == and all() at 93 kB."""
    diff = a[0] ^ b[0]
    for j in range(1, a.size):
        diff |= a[j] ^ b[j]
    same[0] = diff == 0


_PYTHON = {"adagrad": _adagrad, "scale": _scale, "same_words": _same_words, "linear_nll": _linear_nll,
           "linear_nll_grad": _linear_nll_grad,
           # per-array forms, which rnn.kernels.training compiles into a whole training step
           "sgd_one": _sgd_one, "momentum_one": _momentum_one, "adagrad_one": _adagrad_one, "adam_one": _adam_one,
           "scale_one": _scale_one, "clamp_one": _clamp_one}
_ADAGRAD_ONE = _adagrad_one  # compiled beside _adagrad (see _compile): a loop of its own per array vectorises


def kernel(name):
    """The compiled update `name`, or None (see the module docstring)."""
    got = _KERNELS.get(name)
    if got is None:
        got = _KERNELS[name] = _compile(_PYTHON[name]) or False
    return got or None


def _compile(fn):
    try:
        import numba
    except ImportError:
        return None
    global _ADAGRAD_ONE
    for cache in (True, False):  # no cache folder Numba can write to: it refuses to decorate with cache=True
        try:
            # error_model="numpy": a division by zero gives inf as in NumPy, instead of a check per element
            # that keeps LLVM from vectorising the loop (3x slower than NumPy's SIMD passes without it).
            jit = numba.njit(error_model="numpy", cache=cache)
            if _ADAGRAD_ONE is _adagrad_one:
                _ADAGRAD_ONE = jit(_adagrad_one)
            return jit(fn)
        except Exception:  # noqa: BLE001 — any failure leaves the NumPy path, which is always right
            _ADAGRAD_ONE = _adagrad_one
    return None


def run(name, *args):
    """Run the update `name`; False (having changed nothing) when it cannot be compiled or loaded here."""
    fn = kernel(name)
    if fn is None:
        return False
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 — compiling failed (before any element was written): NumPy from now on
        _KERNELS[name] = False
        return False
    return True


def flat(arrays, written=True):
    """The arrays as a tuple of 1-d float64 views for a kernel, or None when one is not float64, or — for
    arrays the kernel writes — not C-contiguous and writable (a reshape would then be a copy, and the
    update of it lost).  An array only read is made contiguous if it is not."""
    out = []
    for a in arrays:
        if a.dtype.char != "d":
            return None
        if not a.flags.c_contiguous:
            if written:
                return None
            a = np.ascontiguousarray(a)
        elif written and not a.flags.writeable:
            return None
        out.append(a.reshape(-1))
    return tuple(out)
