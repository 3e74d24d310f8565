"""Optimizers with PyTorch's update equations, and state you can save and restore.

Each optimizer takes the parameters to update: `model.parameters()`, a Module,
`model.named_parameters()` pairs, or any iterable of float Tensors.  `step()`
updates `p.data` in place (float32 stays float32) for every parameter whose
`.grad` is not None; parameters without a gradient, and frozen ones
(requires_grad=False), are skipped and their state (step count, buffers)
does not advance, as in PyTorch.

`state_dict()` is a flat dict of NumPy arrays (hyperparameters as 0-d float64,
per-parameter step counts as int64, buffers in the parameter's dtype), keyed
by the parameter's position: "lr", "step", "0.exp_avg", ...  So it fits in an
.npz as is (see minigrad.checkpoint).  `load_state_dict()` checks every key,
shape and dtype first and changes nothing if anything differs; like PyTorch it
also restores the hyperparameters, so a resumed run uses the saved lr.

To skip a step whose gradients are not finite, see `clip.clip_grad_norm_`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from . import fused
from .clip import _named_params, grad_values


class Optimizer(ABC):
    """Base class: holds the parameters, per-parameter step counts and buffers."""

    hyperparameters: tuple = ()   # names of the float hyperparameters, saved as 0-d arrays
    buffers: tuple = ()           # names of the per-parameter state arrays, shaped like the parameter
    # The name of this update's per-array form in minigrad.fused, update(p, g, *buffers, *fused_scalars(t))
    # over 1-d float64 views, bitwise `_update`: what a compiled training step (rnn.kernels.training)
    # runs.  None: it has none.
    fused_update = None

    def __init__(self, params, **hyper):
        named = _named_params(params, type(self).__name__)
        if not named:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        seen = {}
        for label, p in named:
            if p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: parameter {label} has dtype {p.dtype}; "
                                "only floating-point tensors can be optimized")
            if id(p) in seen:
                # It would be updated twice per step with one gradient.
                raise ValueError(f"{type(self).__name__}: parameter {label} is the same tensor as "
                                 f"{seen[id(p)]}; pass each parameter once")
            seen[id(p)] = label
        self.labels = [label for label, _ in named]
        self.params = [p for _, p in named]
        self._check_hyper(hyper)
        self.__dict__.update(hyper)
        self.steps = np.zeros(len(self.params), dtype=np.int64)
        # Zero buffers behave exactly like PyTorch's lazily created ones (see each step()),
        # and being there from the start keeps state_dict()'s keys fixed.
        self.state = [{b: np.zeros_like(p.data) for b in self._buffer_names()} for p in self.params]

    # --- to override ----------------------------------------------------------
    def _check_hyper(self, hyper):
        for k, v in hyper.items():
            if not np.isfinite(v):
                raise ValueError(f"{type(self).__name__}: {k} must be finite, got {v}")
        if hyper.get("lr", 0.0) < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {hyper['lr']}")

    def _buffer_names(self):
        return self.buffers

    def fused_scalars(self, step):
        """The scalar arguments of `fused_update` for a parameter at its step `step` (counted from 1)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-array update")

    @abstractmethod
    def _update(self, p, g, state, step):
        """Change p.data in place from its gradient g and its buffers in `state`."""

    # --- the public interface -------------------------------------------------
    def step(self):
        """One update of every parameter that has a gradient (none at all if a gradient has the wrong shape)."""
        todo = []
        for i, p in enumerate(self.params):
            if p.grad is None or not p.requires_grad:  # a frozen parameter stays put, even with a stale grad
                continue
            g = grad_values(p.grad)
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {self.labels[i]} has shape {p.shape} "
                                 f"but its grad has shape {g.shape}")
            # Computing in the parameter's dtype keeps float32 models float32 end to end.
            todo.append((i, p, g.astype(p.dtype, copy=False)))
        for i, _, _ in todo:
            self.steps[i] += 1
        if todo and self._update_all(todo):
            return
        for i, p, g in todo:
            self._update(p, g, self.state[i], int(self.steps[i]))

    def _update_all(self, todo):
        """Update every parameter of `todo` [(index, parameter, gradient)] at once; False to have
        `_update` called on each instead (see minigrad.fused)."""
        return False

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def state_dict(self):
        out = {k: np.array(float(getattr(self, k)), dtype=np.float64) for k in self.hyperparameters}
        out["step"] = self.steps.copy()
        for i, st in enumerate(self.state):
            for b, arr in st.items():
                out[f"{i}.{b}"] = arr.copy()
        return out

    def expected_state(self):
        """{key: (shape, dtype)} that `load_state_dict` accepts for this optimizer."""
        exp = {k: ((), np.dtype(np.float64)) for k in self.hyperparameters}
        exp["step"] = ((len(self.params),), np.dtype(np.int64))
        for i, p in enumerate(self.params):
            for b in self._buffer_names():
                exp[f"{i}.{b}"] = (p.shape, p.dtype)
        return exp

    def check_state_dict(self, state):
        """The list of reasons `state` does not fit this optimizer (empty when it fits)."""
        if not hasattr(state, "keys"):
            return [f"expected a dict of arrays, got {type(state).__name__}"]
        exp = self.expected_state()
        problems = [f"missing: {k}" for k in exp if k not in state]
        problems += [f"unexpected: {k}" for k in state if k not in exp]
        for k, (shape, dtype) in exp.items():
            if k not in state:
                continue
            arr = np.asarray(state[k])
            what = k if "." not in k else f"{k} (parameter {self.labels[int(k.split('.')[0])]})"
            if arr.shape != shape:
                problems.append(f"{what}: shape {arr.shape} in the state, {shape} expected")
            elif arr.dtype != dtype:
                problems.append(f"{what}: dtype {arr.dtype} in the state, {dtype} expected")
        if problems:
            return problems
        if (np.asarray(state["step"]) < 0).any():
            problems.append("step: step counts must be >= 0")
        try:
            self._check_hyper({k: float(state[k]) for k in self.hyperparameters})
        except ValueError as e:
            problems.append(f"hyperparameters: {e}")
        return problems

    def load_state_dict(self, state):
        """Restore hyperparameters, step counts and buffers; on any mismatch raise and change nothing."""
        problems = self.check_state_dict(state)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state does not fit this optimizer "
                             f"({len(self.params)} parameters): " + "; ".join(problems))
        for k in self.hyperparameters:
            setattr(self, k, float(state[k]))
        self.steps = np.array(state["step"], dtype=np.int64)
        self.state = [{b: np.array(state[f"{i}.{b}"], dtype=p.dtype) for b in self._buffer_names()}
                      for i, p in enumerate(self.params)]

    def __repr__(self):
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameters)
        return f"{type(self).__name__}({len(self.params)} parameters, {hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    PyTorch's torch.optim.SGD (dampening 0, no Nesterov, no weight decay):

        b_t = momentum * b_{t-1} + g_t     (b_1 = g_1)
        p_t = p_{t-1} - lr * b_t           (b_t = g_t when momentum == 0)
    """

    hyperparameters = ("lr", "momentum")

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr=float(lr), momentum=float(momentum))

    def _check_hyper(self, hyper):
        super()._check_hyper(hyper)
        if hyper["momentum"] < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {hyper['momentum']}")

    def _buffer_names(self):
        # Plain SGD keeps no buffer, as in PyTorch; so its state has none to save either.
        return ("momentum_buffer",) if self.momentum != 0 else ()

    @property
    def fused_update(self):
        return "momentum_one" if self.momentum != 0 else "sgd_one"

    def fused_scalars(self, step):
        return (self.lr, self.momentum) if self.momentum != 0 else (self.lr,)

    def _update(self, p, g, state, step):
        if self.momentum != 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum   # zero on the first step, so b_1 = g_1
            buf += g
            g = buf
        p.data -= self.lr * g


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011), the classic optimizer for char-RNNs.

    PyTorch's torch.optim.Adagrad (lr_decay 0, initial accumulator 0, no weight decay):

        s_t = s_{t-1} + g_t^2
        p_t = p_{t-1} - lr * g_t / (sqrt(s_t) + eps)
    """

    hyperparameters = ("lr", "eps")
    buffers = ("sum",)
    fused_update = "adagrad_one"

    def __init__(self, params, lr=1e-2, eps=1e-8):
        super().__init__(params, lr=float(lr), eps=float(eps))

    def _check_hyper(self, hyper):
        super()._check_hyper(hyper)
        if hyper["eps"] < 0:
            raise ValueError(f"Adagrad: eps must be >= 0, got {hyper['eps']}")

    def fused_scalars(self, step):
        return (self.lr, self.eps)

    def _update(self, p, g, state, step):
        s = state["sum"]
        s += g * g
        p.data -= self.lr * g / (np.sqrt(s) + self.eps)

    def _update_all(self, todo):  # the same update, one compiled loop over all float64 parameters
        ps = fused.flat([p._data for _, p, _ in todo])
        ss = ps and fused.flat([self.state[i]["sum"] for i, _, _ in todo])
        gs = ss and fused.flat([g for _, _, g in todo], written=False)
        if not gs or not fused.run("adagrad", ps, gs, ss, self.lr, self.eps):
            return False
        for _, p, _ in todo:
            p._version += 1  # changed in place, as `p.data -= ...` would have said
        return True


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015).

    PyTorch's torch.optim.Adam (no AMSGrad, no weight decay), t counted per parameter:

        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        p_t = p_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    which is the paper's update with bias-corrected m_hat = m_t / (1 - beta1^t),
    v_hat = v_t / (1 - beta2^t) and eps added to sqrt(v_hat).
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps")
    buffers = ("exp_avg", "exp_avg_sq")
    fused_update = "adam_one"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        beta1, beta2 = betas
        super().__init__(params, lr=float(lr), beta1=float(beta1), beta2=float(beta2), eps=float(eps))

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def _check_hyper(self, hyper):
        super()._check_hyper(hyper)
        for k in ("beta1", "beta2"):
            if not 0.0 <= hyper[k] < 1.0:
                raise ValueError(f"Adam: {k} must lie in [0, 1), got {hyper[k]}")
        if hyper["eps"] < 0:
            raise ValueError(f"Adam: eps must be >= 0, got {hyper['eps']}")

    def fused_scalars(self, step):
        return (self.lr / (1 - self.beta1 ** step), self.beta1, self.beta2, math.sqrt(1 - self.beta2 ** step), self.eps)

    def _update(self, p, g, state, step):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        # Python floats, so a float32 parameter is not promoted to float64.
        bias1 = 1 - self.beta1 ** step
        bias2 = 1 - self.beta2 ** step
        p.data -= (self.lr / bias1) * m / (np.sqrt(v) / math.sqrt(bias2) + self.eps)
