"""The engine's primitives, one record each: forward, vector-Jacobian product, scalar forms.

Everything else in the engine is built from these (see minigrad.functional).
Each forward works on NumPy arrays; each VJP, below it, is written with `ops`,
so the same rule runs on arrays (backward) and on tensors (a backward that is
itself recorded).  An element-wise op also says how one element is computed
and differentiated in the generated kernels (`scalar`, `partials`: Python
source for Numba, with `one` and `zero` of the kernel's dtype); the tests hold
these to the forward and the VJP.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import buffers, fused
from .op import ops, primitive, unbroadcast
from .tensor import Tensor


def unary(form, partial):
    """Scalar forms of an op of one argument: '{a}' is the argument, '{g}' and '{out}' the incoming
    gradient and the op's output."""
    return dict(scalar=lambda a: form.format(a=a),
                partials=lambda g, out, a: (partial and partial.format(g=g, out=out, a=a),))


def binary(form, partial_a, partial_b):
    """Scalar forms of an op of two arguments, '{a}' and '{b}'."""
    fill = lambda p, g, out, a, b: p and p.format(g=g, out=out, a=a, b=b)  # noqa: E731
    return dict(scalar=lambda a, b: form.format(a=a, b=b),
                partials=lambda g, out, a, b: (fill(partial_a, g, out, a, b), fill(partial_b, g, out, a, b)))


# --- arithmetic -------------------------------------------------------------------------

@primitive("add", **binary("{a} + {b}", "{g}", "{g}"))
def add(a, b):
    if a.shape != b.shape:  # NumPy's message names both shapes (equal ones always broadcast)
        np.broadcast_shapes(a.shape, b.shape)
    return a + b


@add.vjp
def _(g, out, a, b):
    return g, g


@primitive("mul", **binary("{a} * {b}", "{g} * {b}", "{g} * {a}"))
def mul(a, b):
    return a * b


@mul.vjp
def _(g, out, a, b):
    return g * b, g * a


@primitive("neg", **unary("-{a}", "-{g}"))
def neg(a):
    return -a


@neg.vjp
def _(g, out, a):
    return (-g,)


def _power_scalar(a, exponent, const):
    return {-1.0: f"one / {a}", 1.0: a, 2.0: f"{a} * {a}"}.get(exponent, f"{a} ** {const(exponent)}")


def _power_partial(g, out, a, exponent, const):
    special = {-1.0: f"-{g} / ({a} * {a})", 1.0: g, 2.0: f"{g} * ({a} + {a})"}
    return (special.get(exponent, f"{g} * {const(exponent)} * {a} ** {const(exponent - 1)}"),)


@primitive("power", float_only=True, scalar=_power_scalar, partials=_power_partial)
def power(a, exponent):
    """a ** exponent for a constant exponent (an attribute, so a kernel can specialise x ** 2)."""
    return a ** np.asarray(exponent, dtype=a.dtype)


@power.vjp
def _(g, out, a, exponent):
    return (g * exponent * ops.power(a, exponent=exponent - 1),)


@primitive("pow", float_only=True)
def pow_tensor(a, b):
    """a ** b elementwise with an array exponent; a constant scalar exponent (x ** 2) goes to power.
    Not exp(b log a): that is NaN for a negative base, where (-2) ** 3 is plainly -8."""
    return a ** b


@pow_tensor.vjp
def _(g, out, a, b):
    safe = a + ops.equal(out, 0.0) * (1 - a)  # d/db a**b = a**b log a, 0 where a**b is 0: log(1) there
    return g * b * ops.pow(a, b - 1), g * out * ops.log(safe)


@primitive("mod", float_only=True, **binary("{a} - np.floor({a} / {b}) * {b}", "{g}", "-{g} * np.floor({a} / {b})"))
def mod(a, b):
    """a % b as NumPy (the sign of b); between its jumps d/da = 1 and d/db = -floor(a / b)."""
    return np.mod(a, b)


@mod.vjp
def _(g, out, a, b):
    return g, -g * ((a - out) / b)  # (a - a % b) / b is floor(a / b)


# --- element-wise functions ---------------------------------------------------------------

@primitive("exp", float_only=True, **unary("math.exp({a})", "{g} * {out}"))
def exp(a):
    return np.exp(a)


@exp.vjp
def _(g, out, a):
    return (g * out,)


@primitive("log", float_only=True, **unary("math.log({a})", "{g} / {a}"))
def log(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a)


@log.vjp
def _(g, out, a):
    return (g / a,)


@primitive("tanh", float_only=True, **unary("_tanh({a}, one)", "{g} * (one - {out} * {out})"))
def tanh(a):
    return np.tanh(a)


@tanh.vjp
def _(g, out, a):
    return (g * (1.0 - out * out),)  # 1.0: NumPy converts a Python int on every call (~130 ns)


@primitive("sigmoid", float_only=True, **unary("_sigmoid({a}, one)", "{g} * {out} * (one - {out})"))
def sigmoid(a):
    e = np.exp(-np.abs(a))  # never overflows
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


@sigmoid.vjp
def _(g, out, a):
    return (g * out * (1.0 - out),)


@primitive("relu", **unary("({a} if {a} > zero else zero)", "({g} if {a} > zero else zero)"))
def relu(a):
    return np.maximum(a, 0)


@relu.vjp
def _(g, out, a):
    return (g * ops.less(0.0, a),)


# Comparisons give 0/1 masks in the inputs' float dtype, as recorded ops with no gradient: a traced
# step can switch units on and off (a clocked unit reads `mg.equal(t % period, 0)`) and be run again.
@primitive("equal", float_only=True, **binary("(one if {a} == {b} else zero)", None, None))
def equal(a, b):
    return (a == b).astype(np.result_type(a, b))


@primitive("less", float_only=True, **binary("(one if {a} < {b} else zero)", None, None))
def less(a, b):
    return (a < b).astype(np.result_type(a, b))


@equal.vjp
@less.vjp
def _(g, out, a, b):
    return None, None


@primitive("stop_gradient", **unary("{a}", None))
def stop_gradient(a):
    """The same values, and no gradient: unlike detach(), a recorded op, so a traced step that cuts a
    gradient can be evaluated again."""
    return a


@stop_gradient.vjp
def _(g, out, a):
    return (None,)


# --- choices (no gradient) --------------------------------------------------------------------

@primitive("onehot")
def _onehot(index, depth, dtype="float64"):
    if index.dtype.kind not in "iu":
        raise TypeError(f"onehot: index must hold integers, got {index.dtype}")
    if index.size and (index.min() < 0 or index.max() >= depth):
        raise ValueError(f"indices must lie in [0, {depth}), got values in [{index.min()}, {index.max()}]")
    return np.eye(depth, dtype=dtype)[index]


def onehot(index, depth, dtype="float64"):
    """Integer class indices -> one-hot rows (a new last axis of `depth`); no gradient."""
    return _onehot(index, depth=int(depth), dtype=np.dtype(dtype).name)


@primitive("argmax_onehot", float_only=True)
def argmax_onehot(a):
    """One-hot of the largest entry along the last axis (the first of ties); no gradient."""
    return np.eye(a.shape[-1], dtype=a.dtype)[a.argmax(axis=-1)]


@primitive("sample_onehot", float_only=True)
def _sample_onehot(logits, seed=0):
    """One-hot of a class drawn from softmax(logits) along the last axis, by inverse CDF on uniforms
    from numpy's default_rng(seed); no gradient."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    u = np.random.default_rng(seed).random(logits.shape[:-1] + (1,))
    k = np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)
    return np.eye(logits.shape[-1], dtype=logits.dtype)[k]


def sample_onehot(logits, seed=0):
    """One-hot of a class drawn from softmax(logits) along the last axis; see _sample_onehot."""
    return _sample_onehot(logits, seed=int(seed))


@_onehot.vjp
@argmax_onehot.vjp
@_sample_onehot.vjp
def _(g, out, *args, **attrs):
    return (None,) * len(args)


# --- reductions and broadcasting ----------------------------------------------------------

def _expand(g, shape, axis, keepdims):
    """Put the reduced axes back so `g` broadcasts against the input (a total's g, of shape () or
    all ones, and a keepdims g broadcast as they are)."""
    if axis is not None and not keepdims:
        axes = {ax % len(shape) for ax in np.atleast_1d(axis)}
        g = ops.reshape(g, shape=tuple(1 if i in axes else s for i, s in enumerate(shape)))
    return ops.broadcast_to(g, shape=tuple(shape))


@primitive("sum")
def sum(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims)


@sum.vjp
def _(g, out, a, axis=None, keepdims=False):
    return (_expand(g, a.shape, axis, keepdims),)


@primitive("max")
def max(a, axis=None, keepdims=False):
    return a.max(axis=axis, keepdims=keepdims)


@max.vjp
def _(g, out, a, axis=None, keepdims=False):
    mask = ops.equal(a, _expand(out, a.shape, axis, keepdims))
    share = mask / ops.sum(mask, axis=axis, keepdims=True)  # ties split the gradient evenly
    return (_expand(g, a.shape, axis, keepdims) * share,)


_FILLED = 1 << 12  # elements: up to here one value is filled into a new array, cheaper than NumPy's view (1 against 2.6 us)


@primitive("broadcast_to")
def broadcast_to(a, shape):
    if a.size == 1 and type(shape) is tuple and a.ndim <= len(shape) and math.prod(shape) <= _FILLED:
        out = np.empty(shape, a.dtype)  # a total's gradient, spread back over a small input
        out[...] = a
        return out
    return np.broadcast_to(a, shape)


@broadcast_to.vjp
def _(g, out, a, shape):
    return (unbroadcast(g, a.shape),)


# --- shape and selection ------------------------------------------------------------------

@primitive("reshape")
def reshape(a, shape):
    return a.reshape(shape)


@reshape.vjp
def _(g, out, a, shape):
    return (ops.reshape(g, shape=a.shape),)


@primitive("transpose")
def transpose(a, axes=None):
    return a.transpose(axes)


@transpose.vjp
def _(g, out, a, axes=None):
    inverse = None if axes is None else tuple(np.argsort([ax % a.ndim for ax in axes]))  # axes may be negative
    return (ops.transpose(g, axes=inverse),)


def _basic(index):
    """Whether `index` is basic indexing (ints, slices, ...): each element picked at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return builtins.all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) for i in parts)


@primitive("getitem")
def getitem(a, index):
    return a[index]


@getitem.vjp
def _(g, out, a, index):
    return (ops.scatter(g, index=index, shape=a.shape),)


@primitive("scatter")
def scatter(g, index, shape):
    """The adjoint of getitem: zeros of `shape` with g added at `index` (repeated indices accumulate)."""
    full = buffers.zeros(shape, g.dtype)
    if _basic(index):
        full[index] = g  # no element twice: plain assignment, far faster than np.add.at
    else:
        np.add.at(full, index, g)
    return full


@scatter.vjp
def _(g, out, a, index, shape):
    return (ops.getitem(g, index=index),)


@primitive("pick")
def pick(a, index):
    """a[..., index]: from each row of `a` along its last axis, the entry `index` names (class indices).

    index has a's shape without the last axis; its values get no gradient.  It is an argument, not an
    attribute, so a traced graph takes new targets as an input instead of keeping the old ones."""
    if index.dtype.kind not in "iu":
        raise TypeError(f"pick: index must hold integers (class indices), got {index.dtype}")
    if index.shape != a.shape[:-1]:
        raise ValueError(f"index must have shape {a.shape[:-1]} (a's without its last axis), got {index.shape}")
    if index.size and (index.min() < 0 or index.max() >= a.shape[-1]):
        raise ValueError(f"indices must lie in [0, {a.shape[-1]}), got values in [{index.min()}, {index.max()}]")
    return a[(*np.indices(index.shape, sparse=True), index)]


@pick.vjp
def _(g, out, a, index):
    idx = getattr(index, "_data", index)  # class indices are never differentiated
    return ops.scatter(g, index=(*np.indices(idx.shape, sparse=True), idx), shape=a.shape), None


@primitive("concatenate", variadic=True)
def concatenate(*arrays, axis=0):
    return np.concatenate(arrays, axis=axis)


@concatenate.vjp
def _(g, out, *arrays, axis=0):
    bounds = np.cumsum([0] + [x.shape[axis] for x in arrays])
    lead = (slice(None),) * (axis % g.ndim)
    return tuple(ops.getitem(g, index=lead + (slice(int(a), int(b)),)) for a, b in zip(bounds[:-1], bounds[1:]))


@primitive("astype")
def astype(a, dtype):
    return a.astype(dtype)


@astype.vjp
def _(g, out, a, dtype):
    return (ops.astype(g, dtype=a.dtype.name),)


# A package may route large float32 matrix products elsewhere: rnn sets this to oneDNN's sgemm where
# the system has it (rnn.kernels.onednn), so that every large float32 product of a process runs on one
# thread pool (two pools spinning beside each other made runs 1.5-2x slower).  (a, b) -> a new array.
large_float32_matmul = None
LARGE_FLOAT32_WORK = 1 << 20  # multiply-adds from which a 2-d float32 product counts as large


@primitive("matmul")
def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs at least 1-d operands; use * for scalars")
    if (large_float32_matmul is not None and a.ndim == 2 == b.ndim and a.dtype == np.float32 == b.dtype
            and a.shape[0] * a.shape[1] * b.shape[-1] >= LARGE_FLOAT32_WORK and a.shape[1] == b.shape[0]):
        return large_float32_matmul(a, b)
    return np.matmul(a, b)


def _swap(m):
    return ops.transpose(m, axes=tuple(range(m.ndim - 2)) + (m.ndim - 1, m.ndim - 2))


@matmul.vjp
def _(g, out, a, b):
    # 1-d operands are matrices of one row (a) or one column (b), as np.matmul treats them
    a2 = ops.reshape(a, shape=(1,) + a.shape) if a.ndim == 1 else a
    b2 = ops.reshape(b, shape=b.shape + (1,)) if b.ndim == 1 else b
    g2 = ops.reshape(g, shape=g.shape[:-1] + (1,) + g.shape[-1:]) if a.ndim == 1 else g
    g2 = ops.reshape(g2, shape=g2.shape + (1,)) if b.ndim == 1 else g2
    ga, gb = ops.matmul(g2, _swap(b2)), ops.matmul(_swap(a2), g2)
    ga = ops.getitem(ga, index=(Ellipsis, 0, slice(None))) if a.ndim == 1 else ga
    gb = ops.getitem(gb, index=(Ellipsis, 0)) if b.ndim == 1 else gb
    return ga, gb


# --- losses ------------------------------------------------------------------------------------

def _class_indices(op, shape, targets):
    """Check that `targets` are class indices for logits of `shape` (..., C): integers of shape (...) in
    [0, C).  (The shape alone: linear_cross_entropy never makes its logits.)"""
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got {targets.dtype} of shape {targets.shape}")
    if not shape or targets.shape != shape[:-1]:
        raise ValueError(f"targets must have the shape of logits without its last axis (the classes), "
                         f"{shape[:-1] if shape else '(logits need a class axis)'}; got {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= shape[-1]):
        raise ValueError(f"targets must lie in [0, {shape[-1]}), got values in [{targets.min()}, {targets.max()}]")


def _mean_factor(n):
    """1/n, by which a mean over n values is taken (mean's NaN over none)."""
    return 1.0 / n if n else np.nan


def _shifted_exp(logits):
    """(max along the classes, exp(logits - max), its sum): the shift keeps exp from overflowing."""
    m = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    e = ops.exp(logits - m)
    return m, e, ops.sum(e, axis=-1, keepdims=True)


@primitive("softmax_cross_entropy", saves=True)
def softmax_cross_entropy(logits, targets, keep=0):
    """Mean negative log-likelihood of the class indices `targets` (...) under `logits` (..., C): the value
    and gradient of functional.cross_entropy, which takes about fifteen engine ops, as one.

    Its arithmetic is that composite's, operation for operation (so a loop may switch between them and
    keep its numbers to the last bit, as tests/test_ops.py checks): log-softmax picked at the targets,
    summed, times 1/n, negated; exp(logits - max) and its sums are kept for the backward.  keep=k keeps
    the first k axes of targets: one mean per entry of them over the rest (rnn.kernels.head computes the
    losses of all T steps, each a mean over the batch, so)."""
    _class_indices("softmax_cross_entropy", logits.shape, targets)
    if not 0 <= keep <= targets.ndim:
        raise ValueError(f"keep={keep}: targets of shape {targets.shape} have {targets.ndim} axes to keep")
    m, e, s = _shifted_exp(logits)
    rows = (*np.indices(targets.shape, sparse=True), targets)
    nll = logits[rows] - (np.log(s) + m)[..., 0]
    over = tuple(range(keep, targets.ndim)) if keep else None  # None: all of them, as the composite sums
    n = math.prod(targets.shape[keep:])
    return -(np.sum(nll, axis=over) * np.asarray(_mean_factor(n), logits.dtype)), (e, s)


@softmax_cross_entropy.vjp
def _(g, out, logits, targets, keep=0, saved=None):
    # The composite's backward, in its order: -g / n reaches each row's target through pick, and the
    # same, negated and divided by the row's sum, reaches every entry through the log-sum-exp.
    idx = getattr(targets, "_data", targets)  # class indices are never differentiated
    g2 = -g * _mean_factor(math.prod(idx.shape[keep:]))
    if keep:  # one mean per kept entry: its gradient spreads over that entry's rows
        g2 = ops.reshape(g2, shape=g2.shape + (1,) * (idx.ndim - keep))
    e, s = saved if saved is not None else _shifted_exp(logits)[1:]
    at_targets = ops.scatter(ops.broadcast_to(g2, shape=idx.shape),
                             index=(*np.indices(idx.shape, sparse=True), idx), shape=logits.shape)
    if keep:
        g2 = ops.reshape(g2, shape=g2.shape + (1,))
    return at_targets + -g2 / s * e, None


@primitive("linear_cross_entropy", saves=True)
def linear_cross_entropy(x, weight, bias, targets):
    """softmax_cross_entropy(x @ weight.T + bias, targets) for x (N, H), weight (K, H), bias (K,) and class
    indices targets (N,): a linear read-out and its loss as one op (nn.Linear's layout) — what a language
    model's training step needs of its logits.  With Numba the forward is one product and one loop over
    the rows, saving the softmax, the backward one loop and three products (minigrad.fused); without
    it, the logits and softmax_cross_entropy's passes.  Its value and gradients are
    softmax_cross_entropy's to rounding."""
    if not x.dtype.kind == weight.dtype.kind == bias.dtype.kind == "f":
        raise TypeError(f"x, weight and bias must be floating point, got {x.dtype}, {weight.dtype}, {bias.dtype}")
    if x.ndim != 2 or weight.ndim != 2 or bias.shape != weight.shape[:1] or x.shape[1:] != weight.shape[1:]:
        raise ValueError(f"x must be (N, H), weight (K, H) and bias (K,); got x {x.shape}, weight "
                         f"{weight.shape}, bias {bias.shape}")
    _class_indices("linear_cross_entropy", x.shape[:1] + bias.shape, targets)
    rows = _linear_rows(x, weight, bias, targets)
    total, softmax = np.zeros(1), np.empty((len(targets), len(bias)), x.dtype)
    if rows is None or not fused.run("linear_nll", *rows, softmax, total):
        return softmax_cross_entropy.forward(x @ weight.T + bias, targets)[0], None
    return -(np.asarray(total[0], x.dtype) * np.asarray(_mean_factor(len(targets)), x.dtype)), softmax


def _linear_rows(x, weight, bias, targets):
    """(x, weight, bias, targets) for the compiled loops: contiguous, one dtype (float64 or float32), the
    targets as intp; None where they have nothing to do or cannot take them (NumPy's path then)."""
    if not len(targets) or not (x.dtype == weight.dtype == bias.dtype) or x.dtype.char not in "df":
        return None
    return (np.ascontiguousarray(x), np.ascontiguousarray(weight), np.ascontiguousarray(bias),
            targets.astype(np.intp, copy=False))


@linear_cross_entropy.vjp
def _(g, out, x, weight, bias, targets, saved=None):
    idx, softmax = getattr(targets, "_data", targets), saved
    if softmax is not None:  # a plain backward after the compiled forward, which saved the softmax
        X, W, _, y = _linear_rows(x, weight, bias, idx)
        dl, dx, dw, db = np.empty_like(softmax), np.empty_like(X), np.empty_like(W), np.empty_like(bias)
        if fused.run("linear_nll_grad", X, W, softmax, y, X.dtype.type(g * _mean_factor(len(y))), dl, dx, dw, db):
            return dx, dw, db, None
    logits = ops.add(ops.matmul(x, ops.transpose(weight)), bias)
    dlogits, _ = softmax_cross_entropy.vjp_rule(g, None, logits, targets)
    return ops.matmul(dlogits, weight), ops.matmul(ops.transpose(dlogits), x), ops.sum(dlogits, axis=0), None
