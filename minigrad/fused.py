"""Updates over all parameters in one compiled call, as PyTorch's `foreach`/`fused` optimizers do.

NumPy runs `s += g * g; p -= lr * g / (sqrt(s) + eps)` as seven passes over each parameter, each a
Python-level call with its own temporary: for the char-RNN's six small parameters, a step of Adagrad
cost more than the recurrence's kernel.  Here each update is one loop over every element of every
parameter, compiled by Numba (loaded lazily: the engine imports without it), computing each element
with exactly the operations, in the order, that the NumPy expression does — so the results are
bitwise those of the NumPy path (tests/test_optim.py holds them to it).

Clipping by norm rescales all gradients in one such loop (minigrad.clip), bitwise NumPy's `g *= coef`;
its norm is a BLAS dot per gradient (minigrad.clip._l2).

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


def _adagrad(ps, gs, ss, lr, eps):
    for k in range(len(ps)):
        _ADAGRAD_ONE(ps[k], gs[k], ss[k], lr, eps)


def _scale(gs, coef):
    for k in range(len(gs)):
        g = gs[k]
        for i in range(g.size):
            g[i] *= coef


_PYTHON = {"adagrad": _adagrad, "scale": _scale}
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
