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
from .clip import NonFiniteGradError, clip_grad_norm_, clip_grad_value_
from .errors import ShapeError
from .functional import cross_entropy, log_softmax, logsumexp, mean, mse_loss, softmax, split, stack
from .gradcheck import GradcheckError, gradcheck
from .graph import CycleError, Edge, Graph, Node, trace
from .tensor import (Tensor, add, astype, concatenate, enable_grad, exp, getitem, is_grad_enabled, log, matmul, max, mul,
                     neg, no_grad, power, relu, reshape, sigmoid, stop_gradient, sum, tanh, transpose,
                     unbroadcast)


def tensor(data, requires_grad=False, name=None, dtype=None):
    return Tensor(data, requires_grad=requires_grad, name=name, dtype=dtype)


def zeros(*shape, requires_grad=False, dtype=_np.float64, name=None):
    return Tensor(_np.zeros(shape, dtype=dtype), requires_grad=requires_grad, name=name)


def ones(*shape, requires_grad=False, dtype=_np.float64, name=None):
    return Tensor(_np.ones(shape, dtype=dtype), requires_grad=requires_grad, name=name)


def randn(*shape, rng=None, requires_grad=False, dtype=_np.float64, name=None):
    rng = rng if rng is not None else _np.random.default_rng()
    return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad, name=name)
