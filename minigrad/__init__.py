"""minigrad: a small tensor autodiff engine over NumPy.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    x.grad  # array([2., 4., 6.])
"""
import numpy as _np

from . import nn, optim
from .checkpoint import CheckpointError, load, save
from .clip import NonFiniteGradError, clip_grad_norm_, clip_grad_value_, grad_norm
from .errors import ShapeError
from .functional import cross_entropy, log_softmax, logsumexp, mean, mse_loss, softmax, split, stack
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .graph import CycleError, Edge, Graph, Node, trace
from .op import PRIMITIVES, Primitive, ops, primitive, unbroadcast
from .primitives import (add, argmax_onehot, astype, broadcast_to, concatenate, equal, exp, getitem, less,
                         linear_cross_entropy, log, matmul, max, mod, mul, neg, onehot, pick, power, relu, reshape,
                         sample_onehot, scatter, sigmoid, softmax_cross_entropy, stop_gradient, sum, tanh, transpose)
from .tensor import Tensor, enable_grad, grad, hvp, is_grad_enabled, no_grad, scope


def tensor(data, requires_grad=False, name=None, dtype=None):
    return Tensor(data, requires_grad=requires_grad, name=name, dtype=dtype)


def _shape(fn, shape):
    """`shape` as NumPy takes it: zeros(2, 3) or zeros((2, 3)); non-negative integers, else an error naming `fn`."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:  # plain non-negative ints, the common case (a model's zero state, every run), in one pass
        if type(n) is not int or n < 0:
            break
    else:
        return shape
    if not all(isinstance(n, (int, _np.integer)) and not isinstance(n, (bool, _np.bool_)) for n in shape):
        raise TypeError(f"{fn}: shape must be integers, got {shape!r}")
    if any(n < 0 for n in shape):
        raise ValueError(f"{fn}: shape must not be negative, got {shape!r}")
    return tuple(int(n) for n in shape)


def zeros(*shape, requires_grad=False, dtype=_np.float64, name=None):
    return Tensor(_np.zeros(_shape("zeros", shape), dtype=dtype), requires_grad=requires_grad, name=name)


def ones(*shape, requires_grad=False, dtype=_np.float64, name=None):
    return Tensor(_np.ones(_shape("ones", shape), dtype=dtype), requires_grad=requires_grad, name=name)


def randn(*shape, rng=None, requires_grad=False, dtype=_np.float64, name=None):
    shape = _shape("randn", shape)
    rng = rng if rng is not None else _np.random.default_rng()
    return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad, name=name)
