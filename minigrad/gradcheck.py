"""Check backward() against central differences in float64."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .tensor import Tensor, no_grad


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
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
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
    inputs = [t if isinstance(t, Tensor) else Tensor(t, requires_grad=True) for t in inputs]
    if any(t.dtype == np.float32 for t in inputs):
        warnings.warn("gradcheck: float32 inputs are checked through float64 copies; "
                      "float32 itself is too coarse for central differences", stacklevel=2)
    # float64 tensors are perturbed in place, so `fn` may also reach them another way (a module's parameters)
    inputs = [Tensor(t._data.astype(np.float64), requires_grad=t.requires_grad, name=t.name)
              if t.dtype == np.float32 else t for t in inputs]
    saved_grads = [t.grad for t in inputs]
    for t in inputs:
        t.grad = None
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")

    rng = np.random.default_rng(seed)
    with no_grad():
        outs = fn(*inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    weights = [rng.uniform(0.5, 1.5, o.shape) * rng.choice([-1.0, 1.0], o.shape) for o in outs]

    total, _ = _projected(fn, inputs, weights)
    if not total.requires_grad:
        raise ValueError("gradcheck: the output does not depend on any input that requires grad")
    total.backward()
    analytic = [inputs[i].grad if inputs[i].grad is not None else np.zeros(inputs[i].shape) for i in checked]
    for t, g in zip(inputs, saved_grads):
        t.grad = g  # leave the caller's accumulated gradients as they were

    result = GradcheckResult(True)
    with no_grad():
        for k, i in enumerate(checked):
            x = inputs[i].data
            for idx in np.ndindex(x.shape):
                orig = x[idx]
                x[idx] = orig + eps
                plus = _projected(fn, inputs, weights)[0].item()
                x[idx] = orig - eps
                minus = _projected(fn, inputs, weights)[0].item()
                x[idx] = orig
                num, ana = (plus - minus) / (2 * eps), float(analytic[k][idx])
                err = abs(ana - num)
                result.checked += 1
                result.worst_rel_error = max(result.worst_rel_error, err / max(abs(num), abs(ana), 1e-12))
                if not err <= atol + rtol * abs(num):
                    result.ok = False
                    result.failures.append((i, idx, ana, num))
    if not result.ok and raise_exception:
        i, idx, ana, num = result.failures[0]
        t = inputs[i]
        who = f"input {i}" + (f" ({t.name!r})" if t.name else "") + f" of shape {t.shape}"
        raise GradcheckError(f"gradcheck: {who}, element {idx}: analytic {ana!r}, numerical {num!r} "
                             f"(tolerance atol={atol}, rtol={rtol}; {len(result.failures)} of "
                             f"{result.checked} elements disagree)")
    return result
