"""Parameters and modules, in the shape PyTorch users know."""
from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .tensor import Tensor


class Parameter(Tensor):
    """A tensor a module holds and, unless frozen (requires_grad=False, or Module.freeze), learns.

    A frozen parameter is still a parameter — saved, loaded, drawn, a kernel input — but no
    gradient is computed for it, so optimizers and clipping leave it alone."""

    is_parameter = True

    def __init__(self, data, name=None, dtype=None, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad, name=name, dtype=dtype)


class Module:
    """Holds Parameters and sub-Modules as attributes; `module(x)` calls `forward(x)`."""

    def __call__(self, *args, **kwargs):
        forward = getattr(self, "forward", None)  # a module may be a mere container of parameters
        if forward is None:
            raise TypeError(f"{type(self).__name__} has no forward(); define one to call the module")
        return forward(*args, **kwargs)

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs: a module's own parameters in attribute order, then each
        sub-module's, depth first (PyTorch's order); a shared Parameter appears once."""
        seen, out, stack = set(), [], [(prefix, self)]
        while stack:
            pre, mod = stack.pop()
            children = []
            for key, val in vars(mod).items():
                if isinstance(val, Parameter) and id(val) not in seen:
                    seen.add(id(val))
                    out.append((pre + key, val))
                elif isinstance(val, Module):
                    children.append((f"{pre}{key}.", val))
                elif isinstance(val, (list, tuple)):
                    children.extend((f"{pre}{key}.{i}.", m) for i, m in enumerate(val) if isinstance(m, Module))
            stack.extend(reversed(children))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def freeze(self):
        """Stop learning every parameter (requires_grad=False; their grads are dropped); returns self."""
        for p in self.parameters():
            p.requires_grad, p.grad = False, None
        return self

    def unfreeze(self):
        """Learn every parameter again; returns self."""
        for p in self.parameters():
            p.requires_grad = True
        return self

    def trainable(self):
        """The parameters that learn (not frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    def state_dict(self):
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def state_problems(self, state, where="the state"):
        """Why `state` ({name: array}) does not fit this module's parameters: a list of reasons
        (names missing or unexpected, shapes or dtypes that differ), empty when it fits."""
        params = dict(self.named_parameters())
        problems = [f"missing: {k}" for k in params if k not in state]
        problems += [f"unexpected: {k}" for k in state if k not in params]
        for k, p in params.items():
            if k in state:
                arr = np.asarray(state[k])
                if arr.shape != p.shape:
                    problems.append(f"{k}: shape {arr.shape} in {where}, {p.shape} in the module")
                elif arr.dtype != p.dtype:
                    problems.append(f"{k}: dtype {arr.dtype} in {where}, {p.dtype} in the module")
        return problems

    def load_state_dict(self, state):
        """Copy arrays in by name; every name, shape and dtype must match, or nothing is changed."""
        problems = self.state_problems(state)
        if problems:
            raise ShapeError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for k, p in self.named_parameters():
            p.data = np.array(state[k], dtype=p.dtype)  # a copy: the caller's arrays stay theirs


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, shape).astype(dtype)


class Linear(Module):
    """y = x @ weight.T + bias, weight of shape (out, in) as in PyTorch."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features), dtype), name="weight")
        self.bias = Parameter(_uniform(rng, bound, (out_features,), dtype), name="bias") if bias else None

    def forward(self, x):
        if x.shape[-1:] != self.weight.shape[1:]:
            raise ShapeError(f"Linear: input has shape {x.shape}, expected last dim {self.weight.shape[1]}")
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y


class Embedding(Module):
    """Rows of `weight` (num, dim) looked up by integer index."""

    def __init__(self, num_embeddings, embedding_dim, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(rng.standard_normal((num_embeddings, embedding_dim)).astype(dtype), name="weight")

    def forward(self, idx):
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        n = self.weight.shape[0]
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got {idx.dtype}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"Embedding: indices must lie in [0, {n}), got values in [{idx.min()}, {idx.max()}]")
        return self.weight[idx]
