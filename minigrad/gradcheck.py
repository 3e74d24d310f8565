"""Check backward() against central differences in float64 — and, by the same comparison run on
a recorded backward, second derivatives against central differences of first ones."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .tensor import Tensor, enable_grad, grad, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient that disagrees with the numerical one."""


@dataclass
class GradcheckResult:
    ok: bool
    checked: int = 0                    # number of input elements compared
    worst_rel_error: float = 0.0
    failures: list = field(default_factory=list)  # (input index, element, analytic, numerical)

    def __bool__(self):
        return self.ok


def _projected(fn, inputs, weights):
    outs = _as_tuple(fn(*inputs))
    total = None
    for o, w in zip(outs, weights):
        term = (o * w).sum()
        total = term if total is None else total + term
    return total, outs


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-8, rtol=1e-6, raise_exception=True, seed=0):
    """Compare the gradients of `fn(*inputs)` with central differences.

    The output (a tensor or a tuple of tensors, any shape) is reduced with a
    fixed random projection, so one backward pass gives a vector-Jacobian
    product that covers every output element.  Inputs that require grad are
    checked; float32 inputs are checked through float64 copies (with a warning).
    Returns a truthy GradcheckResult, or raises GradcheckError naming the
    input, the element and both values.
    """
    inputs = _float64(inputs, "gradcheck")
    labels = [_label(f"input {i}", t) for i, t in enumerate(inputs)]
    return _compare(fn, inputs, labels, "gradcheck", "", eps, atol, rtol, raise_exception, seed)


def gradgradcheck(fn, inputs, *, eps=1e-6, atol=1e-8, rtol=1e-6, raise_exception=True, seed=0):
    """Compare the second derivatives of `fn(*inputs)` with central differences of its first ones.

    The first derivatives are taken as PyTorch's gradgradcheck takes them: the
    vector-Jacobian product of fn's outputs with fixed random vectors v, by a
    recorded backward (`mg.grad(..., create_graph=True)`).  That is a function of
    the inputs and of v, and `gradcheck`'s comparison is run on it: its backward
    — the backward of the recorded backward — against central differences of
    the first derivatives.  v is checked as an input too, which catches a
    backward that reads v's values instead of recording what it does with them.
    Raises GradcheckError naming the input (or grad_outputs[k], a v), the element
    and both values, or returns a truthy GradcheckResult.
    """
    inputs = _float64(inputs, "gradgradcheck")
    if not any(t.requires_grad for t in inputs):
        raise ValueError("gradgradcheck: no input requires grad, so there is nothing to check")
    with no_grad():
        outs = _as_tuple(fn(*inputs))
    rng = np.random.default_rng(seed + 1)  # not gradcheck's projection (seed): v and the projection differ
    vs = [Tensor(rng.uniform(0.5, 1.5, o.shape) * rng.choice([-1.0, 1.0], o.shape), requires_grad=True)
          for o in outs]
    n = len(inputs)

    def first_derivatives(*args):
        xs, v = args[:n], args[n:]
        with enable_grad():  # gradcheck calls this under no_grad for its differences; grad needs the graph
            pairs = [(o, w) for o, w in zip(_as_tuple(fn(*xs)), v) if o.requires_grad]
            if not pairs:
                raise ValueError("gradgradcheck: the output does not depend on any input that requires grad")
            return grad([o for o, _ in pairs], [x for x in xs if x.requires_grad],
                        grad_outputs=[w for _, w in pairs], create_graph=True)

    labels = [_label(f"input {i}", t) for i, t in enumerate(inputs)]
    labels += [f"grad_outputs[{k}] (the v of the first derivatives) of shape {v.shape}" for k, v in enumerate(vs)]
    return _compare(first_derivatives, [*inputs, *vs], labels, "gradgradcheck",
                    "the (projected) first derivatives' derivative by it ", eps, atol, rtol, raise_exception, seed)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _label(what, t):
    return what + (f" ({t.name!r})" if t.name else "") + f" of shape {t.shape}"


def _float64(inputs, who):
    """The inputs as tensors (arrays require grad), float32 ones as float64 copies with a warning."""
    inputs = [t if isinstance(t, Tensor) else Tensor(t, requires_grad=True) for t in inputs]
    if any(t.dtype == np.float32 for t in inputs):
        warnings.warn(f"{who}: float32 inputs are checked through float64 copies; "
                      "float32 itself is too coarse for central differences", stacklevel=3)
    # float64 tensors are perturbed in place, so `fn` may also reach them another way (a module's parameters)
    return [Tensor(t._data.astype(np.float64), requires_grad=t.requires_grad, name=t.name)
            if t.dtype == np.float32 else t for t in inputs]


def _compare(fn, inputs, labels, who, what, eps, atol, rtol, raise_exception, seed):
    """backward() of fn's projected output against its central differences, for every input that
    requires grad; labels[i] names input i in the error, `what` says what was compared."""
    saved_grads = [t.grad for t in inputs]
    for t in inputs:
        t.grad = None
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError(f"{who}: no input requires grad, so there is nothing to check")

    rng = np.random.default_rng(seed)
    with no_grad():
        outs = _as_tuple(fn(*inputs))
    weights = [rng.uniform(0.5, 1.5, o.shape) * rng.choice([-1.0, 1.0], o.shape) for o in outs]

    total, _ = _projected(fn, inputs, weights)
    if not total.requires_grad:
        raise ValueError(f"{who}: the output does not depend on any input that requires grad")
    total.backward()
    analytic = [inputs[i].grad if inputs[i].grad is not None else np.zeros(inputs[i].shape) for i in checked]
    for t, g in zip(inputs, saved_grads):
        t.grad = g  # leave the caller's accumulated gradients as they were

    result = GradcheckResult(True)
    with no_grad():
        for k, i in enumerate(checked):
            for idx in np.ndindex(inputs[i].shape):
                # each write through a fresh `.data`: the next forward then copies the values it records, so a
                # recorded backward inside fn (gradgradcheck) finds its leaves unchanged (tensor.check_saved)
                orig = inputs[i].data[idx]
                inputs[i].data[idx] = orig + eps
                plus = _projected(fn, inputs, weights)[0].item()
                inputs[i].data[idx] = orig - eps
                minus = _projected(fn, inputs, weights)[0].item()
                inputs[i].data[idx] = orig
                num, ana = (plus - minus) / (2 * eps), float(analytic[k][idx])
                err = abs(ana - num)
                result.checked += 1
                result.worst_rel_error = max(result.worst_rel_error, err / max(abs(num), abs(ana), 1e-12))
                if not err <= atol + rtol * abs(num):
                    result.ok = False
                    result.failures.append((i, idx, ana, num))
    if not result.ok and raise_exception:
        i, idx, ana, num = result.failures[0]
        raise GradcheckError(f"{who}: {labels[i]}, element {idx}: {what}analytic {ana!r}, numerical {num!r} "
                             f"(tolerance atol={atol}, rtol={rtol}; {len(result.failures)} of "
                             f"{result.checked} elements disagree)")
    return result
