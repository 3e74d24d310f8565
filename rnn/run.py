"""Running a cell over a sequence: forward over time, and BPTT as plain backprop.

``run(cell, xs, state0=None, *, batch_first=False, backend="auto") -> RunResult``

with ``step :: (x, state) -> state`` the cell's step.  Roughly this Python loop::

    def run(cell, xs, state0=None):
        state = cell.initial_state(B) if state0 is None else state0
        outputs = []
        for x in xs:                       # xs: (T, B, I), time-major
            state = cell.step(x, state)    # state keeps its shape and dtype
            outputs.append(cell.output(state))
        return stack(outputs), state

except that the loop is an explicit object: the cell's rolled graph unfolded
into T steps (`rnn.unfold`) and evaluated with engine ops, so the result can
be inspected, drawn and differentiated.  The carried state must keep its
shape from one step to the next; a step that changes it is an error.

Backpropagation through time is then nothing but `loss.backward()` on that
DAG.  Two steps of an Elman net, h1 = f(x1, h0; θ), h2 = f(x2, h1; θ), with
a loss L(h1, h2), show its whole structure::

    ∂L/∂h2 = ∂L/∂h2 (direct)
    ∂L/∂h1 = ∂L/∂h1 (direct) + (∂h2/∂h1)ᵀ ∂L/∂h2        # the gradient flows back along the chain
    ∂L/∂θ  = (∂h1/∂θ)ᵀ ∂L/∂h1 + (∂h2/∂θ)ᵀ ∂L/∂h2        # one shared θ: a sum over steps

For h(t) = tanh(a(t)), a(t) = b + W h(t-1) + U x(t), ∂h2/∂h1 = diag(1 - h2²) W,
so the gradient reaching step t is multiplied by T - t such Jacobians: it
vanishes or explodes with their norm (Goodfellow et al. §10.7).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import Tensor

from .rolled import as_tuple, check_state
from .unfold import unfold

BACKENDS = ("auto", "graph", "numba")


@dataclass
class RunResult:
    outputs: Tensor          # (T, B, H), or (B, T, H) with batch_first
    state: object            # the final state: a tensor or a tuple of tensors
    graph: object            # the unfolded graph that ran
    backend: str = "graph"   # which backend ran: "graph" or "numba"
    states: list = field(default_factory=list, repr=False)  # per step, the state tuple (grads retained)
    fallback: str | None = None  # why backend="auto" ran the explicit DAG instead of a kernel

    def __iter__(self):      # outputs, state, graph = rnn.run(...)
        return iter((self.outputs, self.state, self.graph))


_NOT_ARRAYS = (str, bytes, dict, set)  # np.asarray would take them, as 0-d or string arrays


def _converted(cell, value, wanted):
    """`value` as a Tensor of the cell's dtype (a Tensor as it is), or a TypeError naming run, the
    cell and what was `wanted`."""
    if isinstance(value, Tensor):
        return value
    try:  # np.ndim too: it fails on ragged lists
        return Tensor(value, dtype=cell.dtype if np.ndim(value) else None)
    except (TypeError, ValueError) as e:  # ragged nested lists, strings in an array
        raise TypeError(f"run({type(cell).__name__}): {wanted}, got a {type(value).__name__} "
                        f"that does not convert: {e}") from None


def check_inputs(cell, xs, state0, batch_first=False):
    """xs as a time-major Tensor, and the initial state, or a clear error naming cell, argument and shapes."""
    name = type(cell).__name__
    if isinstance(xs, _NOT_ARRAYS) or xs is None:
        raise TypeError(f"run({name}): xs must be a sequence array of shape (T, B, {cell.input_size}), "
                        f"got {type(xs).__name__}")
    xs = _converted(cell, xs, f"xs must be a numeric sequence array of shape (T, B, {cell.input_size})")
    layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
    if xs.ndim != 3:
        raise ValueError(f"run({name}): xs must be 3-d {layout}, got shape {xs.shape}")
    if batch_first:
        xs = xs.transpose(1, 0, 2)
    T, B, I = xs.shape
    if T == 0 or B == 0:
        raise ValueError(f"run({name}): xs of shape {xs.shape} has no steps or no batch; need T >= 1 and B >= 1")
    if I != cell.input_size:
        raise ValueError(f"run({name}): xs has input size {I} (shape {xs.shape}), "
                         f"the cell expects input_size={cell.input_size}")
    if xs.dtype != cell.dtype:
        raise TypeError(f"run({name}): xs has dtype {xs.dtype}, the cell's parameters are {cell.dtype}; "
                        f"convert with xs.astype('{cell.dtype}')")
    expected = cell.initial_state(B)
    if state0 is None:
        return xs, expected
    state0 = _state_tensors(cell, state0, expected)
    check_state(cell, "state0", state0, expected)
    for s, e in zip(as_tuple(state0), as_tuple(expected)):
        if s.dtype != e.dtype:
            raise TypeError(f"run({name}): state0 has dtype {s.dtype}, the cell's parameters are {e.dtype}")
    return xs, state0


def _state_tensors(cell, state0, expected):
    """state0 in the cell's structure, arrays made constant Tensors of the cell's dtype (as xs is).
    For a one-state cell a list or array is that state's values; a tuple of one is accepted too.
    For a cell that carries several, a tuple or list holds one value per state."""
    several = isinstance(expected, tuple)
    parts = as_tuple(state0) if several or isinstance(state0, tuple) else (state0,)

    conv = tuple(p if p is None or isinstance(p, _NOT_ARRAYS)  # check_state names what is wrong with it
                 else _converted(cell, p, "state0 must hold numeric arrays of the state's shape")
                 for p in parts)
    return conv if several else conv[0] if len(conv) == 1 else conv


def run(cell, xs, state0=None, *, batch_first=False, backend="auto"):
    """Run `cell` over `xs`; see the module docstring."""
    if backend not in BACKENDS:
        raise ValueError(f"run: backend must be one of {BACKENDS}, got {backend!r}")
    xs, state0 = check_inputs(cell, xs, state0, batch_first)
    result = reason = None
    if backend != "graph":
        from .kernel_plan import KernelError, UnsupportedCellError  # plain Python: importable without numba
        try:
            from .fused import run_numba
            result = run_numba(cell, xs, state0)
        except (ImportError, UnsupportedCellError, KernelError) as e:
            if backend == "numba":
                raise
            reason = str(e)
    if result is None:
        result = run_graph(cell, xs, state0)
        result.fallback = reason
    if batch_first:
        result.outputs = result.outputs.transpose(1, 0, 2)
    return result


def feeds_for(graph, cell, xs, state0):
    """Values for the unfolded graph's leaves: parameters, x(t) and the initial state."""
    named = dict(cell.named_parameters())
    feeds = {pid: named[pname] for pid, pname in graph.meta["params"].items()}
    for t, xid in enumerate(graph.meta["x"]):
        feeds[xid] = xs[t] if xs.requires_grad else Tensor(xs._data[t])
    feeds.update(zip(graph.meta["state0"], as_tuple(state0)))
    return feeds


def run_graph(cell, xs, state0):
    """Evaluate the explicit unfolded DAG with engine ops."""
    graph = unfold(cell.rolled(batch=xs.shape[1]), xs.shape[0])
    values = graph.evaluate(feeds_for(graph, cell, xs, state0))
    graph.tensors = values
    states = [tuple(values[i].retain_grad() for i in ids) for ids in graph.meta["state_out"]]
    outputs = mg.stack([cell.output(s if len(s) > 1 else s[0]) for s in states], axis=0)
    final = states[-1] if len(states[-1]) > 1 else states[-1][0]
    return RunResult(outputs, final, graph, "graph", states)
