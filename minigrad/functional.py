"""Ops built from the primitives: each a line or two, with no backward of its own.

The composite ones record their ops inside an `mg.scope` of their own name, so a
picture can box them ("log_softmax") or draw each as one node.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import ShapeError
from .op import coerce
from .primitives import concatenate, exp, getitem, log, max, pick, reshape, stop_gradient, sum
from .tensor import Tensor, scope


def _axis_size(x, axis):
    return int(np.prod([x.shape[a] for a in np.atleast_1d(axis)])) if axis is not None else x.size


def mean(x, axis=None, keepdims=False):
    """The mean over `axis`; NaN over no elements, as in NumPy and PyTorch (without NumPy's warning)."""
    n = _axis_size(x, axis)
    return sum(x, axis=axis, keepdims=keepdims) * (1.0 / n if n else np.nan)


def stack(tensors, axis=0):
    tensors = coerce(list(tensors), "stack")
    if not tensors:  # else tensors[0] below fails with a bare IndexError
        raise ValueError("stack: needs at least one tensor")
    if len({t.shape for t in tensors}) > 1:
        raise ShapeError(f"stack: all tensors need the same shape, got {[t.shape for t in tensors]}")
    ax = axis % (tensors[0].ndim + 1)
    return concatenate([reshape(t, shape=t.shape[:ax] + (1,) + t.shape[ax:]) for t in tensors], axis=ax)


def split(x, sections, axis=-1):
    """Like np.split: `sections` equal parts, or the cut indices."""
    n = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0 or n % sections:
            raise ShapeError(f"split: axis {axis} of shape {x.shape} does not split into {sections} equal parts")
        sections = [n // sections * k for k in range(1, sections)]
    bounds = [0, *sections, n]
    lead = (slice(None),) * (axis % x.ndim)
    return [getitem(x, index=lead + (slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


def composite(fn):
    """Record `fn`'s ops inside a scope named after it."""
    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        with scope(fn.__name__):
            return fn(*args, **kwargs)
    return scoped


@composite
def logsumexp(x, axis=-1, keepdims=False):
    # The shift keeps exp from overflowing; its gradient cancels exactly, so it is cut — by a recorded op
    # (not detach()), so that a traced step can use the softmax family and be evaluated again.
    m = stop_gradient(max(x, axis=axis, keepdims=True))
    out = log(sum(exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else reshape(out, shape=np.squeeze(out._data, axis=axis).shape)


@composite
def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)


@composite
def softmax(x, axis=-1):
    return exp(log_softmax(x, axis=axis))


@composite
def cross_entropy(logits, targets):
    """Mean negative log-likelihood of integer `targets` (N,) under `logits` (N, C).

    The targets reach the graph as an argument of `pick`, so a traced step that ends in this loss
    takes each batch's targets as an input."""
    targets = targets if isinstance(targets, Tensor) else Tensor(np.asarray(targets))
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ShapeError(f"cross_entropy: logits must be (N, C) and targets (N,), got logits {logits.shape} "
                         f"and targets {targets.shape}")
    ids = targets._data
    if ids.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: targets must lie in [0, {logits.shape[1]}), "
                         f"got values in [{ids.min()}, {ids.max()}]")
    return -mean(pick(log_softmax(logits, axis=1), targets))


@composite
def mse_loss(pred, target):
    pred, target = coerce([pred, target], "mse_loss")
    if pred.shape != target.shape:
        raise ShapeError(f"mse_loss: pred has shape {pred.shape}, target has shape {target.shape}")
    return mean((pred - target) ** 2)
