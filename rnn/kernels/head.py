"""o(t) and L(t) for every step at once: the part of a network that nothing carries forward.

The kernels compute the recurrence; the output o(t) = output(h(t)) and the loss L(t) = loss(o(t), y(t))
read only this step's values, so they need not run step by step.  Their traced ops are evaluated once
over all T steps with a leading time axis — what JAX calls vmap: every value the head reads from the
step (h(t), x(t), y(t)) arrives stacked (T, ...), every parameter as it is, and each op is rewritten
to leave that axis alone:

    element-wise ops      a stacked argument gets unit axes after its time axis, so it broadcasts
                          against the others as its per-step value did
    x @ W                 (T, B, H) @ (H, K) as one (T·B, H) @ (H, K) product
    sum, max (axis a)     axis a + 1; over all axes -> over all but the time axis
    reshape, transpose,   the time axis kept first, the per-step arguments shifted by one
    getitem, concatenate,
    broadcast_to
    pick                  unchanged (it picks along the last axis)
    softmax_cross_entropy one more leading axis kept: a mean per step

So a head of ten ops costs ten engine ops per run instead of ten per step.  An op without a rule here,
or a head that reads a value of the step other than its states and x(t), is run step by step as
before (`Head.why_not` says which).
"""
from __future__ import annotations

import numpy as np

from minigrad.graph import run_ops
from minigrad.op import PRIMITIVES
from minigrad.primitives import reshape
from minigrad.tensor import Tensor, is_grad_enabled, record
from minigrad.walk import toposort

from .blas import matmul2d

_SHAPE_OPS = {"reshape", "transpose", "getitem", "concatenate", "broadcast_to", "sum", "max", "matmul", "pick",
              "softmax_cross_entropy"}


class Head:
    """The traced head of `rolled` from `roots` (e.g. its output id), to run over all steps at once.
    stacked_leaves: the ids of the values that arrive with a time axis (new states, x(t), y(t), o(t))."""

    def __init__(self, rolled, roots, stacked_leaves):
        self.nodes, self.args = rolled.nodes, rolled.arguments()
        self.leaves = set(stacked_leaves)
        stop = lambda nid: nid in self.leaves or self.nodes[nid].op == "leaf"  # noqa: E731
        self.order = [nid for nid in toposort(list(roots), lambda nid: [] if stop(nid) else self.args[nid])
                      if not stop(nid)]  # the head's ops, arguments first, down to its leaves
        self.stacked = set(self.leaves)  # what has a time axis: the stacked leaves and what reads one
        for nid in self.order:
            if any(a in self.stacked for a in self.args[nid]):
                self.stacked.add(nid)
        self.reads = {a for nid in self.order for a in self.args[nid] if a not in self.order}

    def why_not(self, known):
        """None if the head can run over time with the values in `known` (ids) given, else the reason."""
        for a in self.reads:
            if a not in self.leaves and a not in known:
                return f"it reads {a}, a value of the step the kernels do not keep"
        for nid in self.order:
            n, args = self.nodes[nid], self.args[nid]
            prim = PRIMITIVES.get(n.op)
            if prim is None or not (prim.elementwise or n.op in _SHAPE_OPS):
                return f"no rule for {n.op} over time"
            if n.op == "matmul" and (args[1] in self.stacked or len(self.nodes[args[1]].shape) != 2
                                     or len(self.nodes[args[0]].shape) < 2):
                return "a product other than (batch, features) @ a matrix"
            if n.op in ("pick", "softmax_cross_entropy") and args[0] not in self.stacked:
                return f"{n.op} of a value that is the same at every step"
        return None

    def run(self, env, T):
        """Evaluate the head; env holds every value it reads (stacked ones with their time axis first).
        Returns env with every head node's value, stacked over the T steps where it depends on them."""
        for nid in self.order:
            n, args = self.nodes[nid], self.args[nid]
            ins = [env[a] for a in args]
            if nid in self.stacked:
                env[nid] = _lifted(n.op, ins, [a in self.stacked for a in args], dict(n.attrs),
                                   [len(self.nodes[a].shape) for a in args], len(n.shape), T)
            else:
                run_ops([nid], lambda _: (n.op, args, n.attrs), env)
        return env


def _shift(axis, ndim):
    """A per-step axis (or axes, or None: all) as the axis of the stacked value."""
    if axis is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axis, tuple):
        return tuple(a % ndim + 1 for a in axis)
    return axis % ndim + 1


def _lifted(op, ins, lifted, attrs, ndims, out_ndim, T):
    prim = PRIMITIVES[op]
    if op == "matmul":
        a, b = ins
        rows = reshape(a, shape=(-1, a.shape[-1]))
        return reshape(_product(rows, b), shape=a.shape[:-1] + (b.shape[1],))
    if op in ("sum", "max"):
        return prim(ins[0], axis=_shift(attrs.get("axis"), ndims[0]), keepdims=attrs.get("keepdims", False))
    if op == "reshape":
        return prim(ins[0], shape=(T,) + tuple(attrs["shape"]))
    if op == "broadcast_to":
        return prim(_unit_axes(ins[0], ndims[0], len(attrs["shape"])), shape=(T,) + tuple(attrs["shape"]))
    if op == "transpose":
        axes = attrs.get("axes")
        axes = tuple(reversed(range(ndims[0]))) if axes is None else tuple(a % ndims[0] for a in axes)
        return prim(ins[0], axes=(0,) + tuple(a + 1 for a in axes))
    if op == "getitem":
        index = attrs["index"]
        index = index if isinstance(index, tuple) else (index,)
        return prim(ins[0], index=(slice(None),) + index)
    if op == "concatenate":
        # a part the same at every step is repeated along time by the engine's broadcast_to, recorded,
        # so that its gradient (summed over the steps) reaches what it was made from
        parts = [x if l else PRIMITIVES["broadcast_to"](x, shape=(T,) + x.shape) for x, l in zip(ins, lifted)]
        return prim(parts, axis=_shift(attrs.get("axis", 0), out_ndim))
    if op in ("pick", "softmax_cross_entropy"):  # targets the same at every step are repeated along time
        a, index = ins
        if not lifted[1]:
            index = Tensor(np.broadcast_to(index.data, (T,) + index.shape))
        return prim(a, index) if op == "pick" else prim(a, index, keep=attrs.get("keep", 0) + 1)  # a mean per step
    # element-wise: stacked arguments get unit axes up to the output's rank, so they broadcast as before
    parts = [_unit_axes(x, d, out_ndim) if l else x for x, l, d in zip(ins, lifted, ndims)]
    return prim(*parts, **attrs)


def _product(a, b):
    """a @ b for 2-d a and b, recorded as the engine's matmul would be, but on the kernels' BLAS: NumPy's
    own, right after a kernel, spins its thread pool against Numba's (docs/performance.md)."""
    out = Tensor(matmul2d(a._data, b._data))
    if is_grad_enabled() and (a.requires_grad or b.requires_grad):
        A, W = a._data, b._data  # the arrays as the forward saw them (record keeps them unchanged)
        record(out, "matmul", [a, b], lambda g: (matmul2d(g, W.T) if a.requires_grad else None,
                                                 matmul2d(A.T, g) if b.requires_grad else None))
    return out


def _unit_axes(x, ndim, out_ndim):
    if ndim >= out_ndim:
        return x
    return reshape(x, shape=(x.shape[0],) + (1,) * (out_ndim - ndim) + x.shape[1:])
