"""Gradient clipping, in place on `.grad`, for exploding gradients in recurrent nets.

`params` may be a Module, `module.named_parameters()` pairs, or an iterable of
Tensors; the names only serve to say which parameter had a bad gradient.
Parameters whose grad is None are skipped.

A non-finite gradient norm means the step is lost: scaling by max_norm/inf
would turn the gradients (and then the weights) into NaN or zeros without a
word.  By default `clip_grad_norm_` raises NonFiniteGradError; with
`error_if_nonfinite=False` it returns the non-finite norm, leaves the grads
untouched, and the training loop skips the update::

    norm = clip_grad_norm_(model.parameters(), 5.0, error_if_nonfinite=False)
    if np.isfinite(norm):
        opt.step()
    opt.zero_grad()

`grad_norm` measures the same norm without clipping (e.g. before clip_grad_value_);
`clip_and_check(params, ("norm" or "value", c) or None)` is that loop's clip-or-skip in one call.
"""
from __future__ import annotations

import math

import numpy as np

from . import fused
from .tensor import Tensor


class NonFiniteGradError(FloatingPointError):
    """The total gradient norm is inf or NaN; the message names the parameters responsible."""


def _named_params(params, who):
    """[(label, Tensor)] from a Module, (name, Tensor) pairs, or Tensors."""
    if hasattr(params, "named_parameters"):
        params = params.named_parameters()
    elif isinstance(params, Tensor):
        params = [params]   # a lone tensor, as torch.nn.utils.clip_grad_norm_ accepts
    out = []
    for i, item in enumerate(params):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor):
            out.append((str(item[0]), item[1]))
        elif isinstance(item, Tensor):
            out.append((f"#{i}" + (f" ({item.name!r})" if item.name else ""), item))
        else:
            raise TypeError(f"{who}: parameters must be Tensors or (name, Tensor) pairs, "
                            f"item {i} is {type(item).__name__}")
    return out


def grad_values(g):
    """A gradient's values as an array.  After backward(create_graph=True) `.grad` is a recorded Tensor;
    an update or a norm reads its values, as PyTorch's optimizers do."""
    return g._data if isinstance(g, Tensor) else np.asarray(g)


def _l2(arrays):
    """Euclidean norm of all elements together, in float64, neither overflowing nor vanishing.

    First the plain sum of squares (a BLAS dot per array: the scaled sum below makes three passes
    and two temporaries per array, which for a char-RNN's six gradients cost more than its clipping).
    Only when that sum is not finite or so small that squares may have underflowed is it redone
    scaled by the largest magnitude, as LAPACK's dnrm2 scales."""
    if not arrays:
        return 0.0
    flat = [a.astype(np.float64, copy=False).reshape(-1) for a in arrays]
    total = sum(float(np.dot(a, a)) for a in flat)
    if _TINY < total < math.inf:
        return math.sqrt(total)
    # the methods, not np.max / np.sum: the same reductions without their Python wrappers (~2 us each)
    amax = max(float(np.abs(a).max()) if a.size else 0.0 for a in flat)
    if amax == 0.0 or not math.isfinite(amax):
        return amax if not any(np.isnan(a).any() for a in flat) else math.nan
    return amax * math.sqrt(sum(float(np.dot(x, x)) for x in (a / amax for a in flat)))


_TINY = 2.0 ** -900  # below this a sum of squares may have lost elements to underflow (their squares < 2^-1074)


def _with_grads(params, who):
    return [(label, p) for label, p in _named_params(params, who) if p.grad is not None and p.requires_grad]


def grad_norm(params):
    """The joint L2 norm of all gradients, a Python float (inf or NaN if any gradient is), changing nothing.

    What clip_grad_norm_ returns, for a loop that clips by value or not at all
    but still wants to skip a step whose gradient is not finite.
    """
    return _l2([grad_values(p.grad) for _, p in _with_grads(params, "grad_norm")])


def clip_grad_value_(params, clip_value):
    """Clip every gradient element into [-clip_value, clip_value], in place (Mikolov 2012).

    NaN elements stay NaN; use clip_grad_norm_ to detect them.
    """
    clip_value = float(clip_value)
    if not clip_value >= 0 or not math.isfinite(clip_value):
        raise ValueError(f"clip_grad_value_: clip_value must be finite and >= 0, got {clip_value}")
    for _, p in _with_grads(params, "clip_grad_value_"):
        if isinstance(p.grad, Tensor):  # a recorded gradient's array is read-only: its clipped values replace it
            p.grad = np.clip(p.grad._data, -clip_value, clip_value)
        else:
            np.clip(p.grad, -clip_value, clip_value, out=p.grad)


def clip_grad_norm_(params, max_norm, error_if_nonfinite=True):
    """Rescale all gradients together so their joint L2 norm is at most max_norm (Pascanu et al. 2013).

    As torch.nn.utils.clip_grad_norm_: every grad is multiplied by
    min(1, max_norm / (total_norm + 1e-6)).  Returns the total norm before
    clipping, a Python float.

    If that norm is inf or NaN: with error_if_nonfinite=True (the default)
    raise NonFiniteGradError naming the parameters whose grads are not finite;
    with False, return the norm and leave every grad as it was, so the caller
    can skip the step (see the module docstring).
    """
    max_norm = float(max_norm)
    if not max_norm >= 0 or not math.isfinite(max_norm):
        raise ValueError(f"clip_grad_norm_: max_norm must be finite and >= 0, got {max_norm}")
    named = _with_grads(params, "clip_grad_norm_")
    # a recorded gradient's values are copied: they are scaled in place below, and its array is read-only
    grads = [p.grad._data.copy() if isinstance(p.grad, Tensor) else np.asarray(p.grad) for _, p in named]
    total = _l2(grads)
    if not math.isfinite(total):
        if error_if_nonfinite:
            bad = [f"{label} {p.shape}: {int(np.count_nonzero(~np.isfinite(g)))} of {g.size} non-finite"
                   for (label, p), g in zip(named, grads) if not np.isfinite(g).all()]
            raise NonFiniteGradError(
                f"clip_grad_norm_: total gradient norm is {total}; non-finite gradients in " + "; ".join(bad)
                + ". Pass error_if_nonfinite=False to get the norm back and skip the step instead.")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        flat = fused.flat(grads)
        scaled = flat and fused.run("scale", flat, coef)  # every gradient in one compiled loop, as below
        for (_, p), g in zip(named, grads):
            if not scaled:
                g *= np.asarray(coef, dtype=g.dtype)   # in place, keeping the grad's dtype
            p.grad = g                             # in case .grad was not an ndarray to begin with
    return total


def clip_and_check(params, clip):
    """Clip the gradients as `clip` = (kind, value) or None says; False, touching nothing, if they are not finite.

    The norm is measured before value clipping, which would turn an inf into a finite number.
    """
    kind, value = clip or (None, None)
    if kind == "norm":
        norm = clip_grad_norm_(params, value, error_if_nonfinite=False)
    else:
        norm = grad_norm(params)
    if not math.isfinite(norm):
        return False
    if kind == "value":
        clip_grad_value_(params, value)
    return True
