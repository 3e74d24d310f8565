"""Running a network over a sequence: forward over time, and BPTT as plain backprop.

``run(cell, xs, state0=None, *, targets=None, loss_steps=None, reduction="sum",
batch_first=False, backend="auto") -> RunResult``

with ``step :: (x, state) -> state``, ``output :: state -> o`` and, when there
are targets, ``loss :: (o, y) -> L`` the cell's methods.  Roughly this Python loop::

    def run(cell, xs, state0=None, targets=None, loss_steps=all):
        state = cell.initial_state(B) if state0 is None else state0
        outputs, losses = [], []
        for t, x in enumerate(xs):             # xs: (T, B, I), time-major
            state = cell.step(x, state)        # state keeps its shape and dtype
            o = cell.output(state)             # o(t); the state itself by default
            outputs.append(o)
            if targets is not None and t in loss_steps:
                losses.append(cell.loss(o, targets[t]))   # L(t), a scalar
        return stack(outputs), state, stack(losses), sum(losses)

except that the loop is an explicit object: the network's rolled graph (step,
output and loss traced once, `rnn.rolled`) unfolded into T steps
(`rnn.unfold`) and evaluated with engine ops, so the result can be inspected,
drawn and differentiated.  The carried state must keep its shape from one step
to the next; a step that changes it is an error.  `targets` are (T, B) class
indices or (T, B, ...) values; `loss_steps` (indices, negative ones counted
from the end, or a boolean mask of length T) puts losses at some steps only —
many-to-one (Goodfellow et al. Fig. 10.5) is ``loss_steps=[-1]``.

Backpropagation through time is then nothing but `result.loss.backward()` on
that DAG.  Two steps of an Elman net, h1 = f(x1, h0; θ), h2 = f(x2, h1; θ),
with a loss L(h1, h2), show its whole structure::

    ∂L/∂h2 = ∂L/∂h2 (direct)
    ∂L/∂h1 = ∂L/∂h1 (direct) + (∂h2/∂h1)ᵀ ∂L/∂h2        # the gradient flows back along the chain
    ∂L/∂θ  = (∂h1/∂θ)ᵀ ∂L/∂h1 + (∂h2/∂θ)ᵀ ∂L/∂h2        # one shared θ: a sum over steps

For h(t) = tanh(a(t)), a(t) = b + W h(t-1) + U x(t), ∂h2/∂h1 = diag(1 - h2²) W,
so the gradient reaching step t is multiplied by T - t such Jacobians: it
vanishes or explodes with their norm (Goodfellow et al. §10.7).  With an output
o(t) = c + V h(t) and L(t) = −log softmax(o(t))[y(t)] (Fig. 10.3, eqs. 10.18–10.22):

    ∂L/∂o(t) = softmax(o(t)) − onehot(y(t))
    ∂L/∂h(t) = Wᵀ diag(1 − h(t+1)²) ∂L/∂h(t+1) + Vᵀ ∂L/∂o(t)
    ∂L/∂V = Σ_t ∂L/∂o(t) h(t)ᵀ,   ∂L/∂W = Σ_t diag(1 − h(t)²) ∂L/∂h(t) h(t−1)ᵀ
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import Tensor

from minigrad.errors import ShapeError
from minigrad.tensor import RECORDING_ADVICE

from .cell import Cell
from .kernels.ir import KernelError, UnsupportedCellError  # plain Python: importable without numba
from .rolled import Context, Targets, as_tuple, check_state, has_loss
from .unfold import unfold

BACKENDS = ("auto", "graph", "numba")
REDUCTIONS = ("sum", "mean")
# The fused kernel's vjp runs on arrays: a backward through it cannot be recorded (create_graph=True).
RECORDING_ADVICE["rnn_kernel"] = ('run the net with rnn.run(..., create_graph=True) (or backend="graph"), whose ops '
                                  'all record their backward')
CREATE_GRAPH_FALLBACK = ("create_graph=True: the fused kernel computes its backward on arrays, which cannot be "
                         "recorded and differentiated again; the explicit graph's ops can")


@dataclass
class RunResult:
    outputs: Tensor          # o(t) stacked: (T, B, K), or (B, T, K) with batch_first
    state: object            # the final state: a tensor or a tuple of tensors
    graph: object            # the unfolded graph that ran (an rnn.UnfoldedGraph)
    backend: str = "graph"   # which backend ran: "graph" or "numba"
    states: list = field(default_factory=list, repr=False)  # per step, the state tuple (grads retained)
    fallback: str | None = None  # why backend="auto" ran the explicit DAG instead of a kernel
    losses: Tensor | None = None  # L(t) at each loss step, (len(loss_steps),); None without targets
    loss: Tensor | None = None    # their sum (or mean, see reduction): the scalar to call backward() on
    loss_steps: list = field(default_factory=list)  # the steps with a loss, ascending
    reduction: str | None = None  # "sum" or "mean" over the loss steps
    fed: Tensor | None = None     # what each step read as y(t−1), stacked (T, B, K); None if it reads none

    def __iter__(self):      # outputs, state, graph = rnn.run(...)
        return iter((self.outputs, self.state, self.graph))


@dataclass
class Supervision:
    """What run() was given to put losses in the graph: per-step targets, where, and how they add up."""
    targets: Tensor          # (T, B, ...), time-major
    steps: list              # loss steps, ascending
    spec: Targets            # what y(t) is at one step
    reduction: str = "sum"


_NOT_ARRAYS = (str, bytes, dict, set)  # np.asarray would take them, as 0-d or string arrays


def _converted(cell, value, wanted, keep_integers=False):
    """`value` as a Tensor of the cell's dtype (a Tensor as it is; integers as they are with
    `keep_integers`), or a TypeError naming run, the cell and what was `wanted`."""
    if isinstance(value, Tensor):
        return value
    try:  # np.ndim too: it fails on ragged lists
        if keep_integers:
            value = np.asarray(value)
            if value.dtype.kind in "iub":
                return Tensor(value)
        return Tensor(value, dtype=cell.dtype if np.ndim(value) else None)
    except (TypeError, ValueError) as e:  # ragged nested lists, strings in an array
        raise TypeError(f"run({type(cell).__name__}): {wanted}, got a {type(value).__name__} "
                        f"that does not convert: {e}") from None


def check_inputs(cell, xs, state0, batch_first=False, steps=None, batch=None):
    """xs as a time-major Tensor (None for a run without inputs, whose length and batch `steps` and
    `batch` give), and the initial state, or a clear error naming cell, argument and shapes."""
    name = type(cell).__name__
    if xs is None:
        for what, v in (("steps", steps), ("batch", batch)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise TypeError(f"run({name}): xs must be a sequence array of shape (T, B, {cell.input_size}), "
                                f"got None; a run without per-step inputs takes steps= and batch= instead "
                                f"(positive integers; {what}={v!r})")
        return None, _state0(cell, state0, int(batch))
    if steps is not None or batch is not None:
        raise TypeError(f"run({name}): steps= and batch= are for a run without xs; xs gives them")
    if isinstance(xs, _NOT_ARRAYS):
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
    return xs, _state0(cell, state0, B)


def _state0(cell, state0, B):
    name = type(cell).__name__
    if state0 is None:
        return cell.initial_state(B)
    expected = _expected_state(cell, B)
    state0 = _state_tensors(cell, state0, expected)
    check_state(cell, "state0", state0, expected)
    for s, e in zip(as_tuple(state0), as_tuple(expected)):
        if s.dtype != e.dtype:
            raise TypeError(f"run({name}): state0 has dtype {s.dtype}, the cell's parameters are {e.dtype}")
    return state0


class _Like:
    """What checking a given state0 reads of the state a cell starts from: its shape and dtype."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def _expected_state(cell, B):
    """The state cell.initial_state(B) makes, or — for a cell that keeps Cell's — its shapes and dtype
    alone: a given state0 is only compared with it, and making zeros to compare with cost more than
    the check (every window of truncated BPTT passes its state on)."""
    if type(cell).initial_state is not Cell.initial_state:
        return cell.initial_state(B)
    dtype = cell.dtype
    like = tuple(_Like(shape, dtype) for shape in cell._zero_shapes(B))
    return like[0] if len(like) == 1 else like


@dataclass
class Given:
    """What a run reads besides xs, state0 and targets: its length and batch, the context, and how
    y(t−1) is fed, from what y0 and with what seed."""
    steps: int
    batch: int
    context: object = None   # a Tensor or a tuple of them
    feed: str | None = None
    y0: Tensor | None = None
    seed: int = 0

    @property
    def context_spec(self):
        return None if self.context is None else Context.of(self.context)


def check_given(cell, T, B, context, feed, y0, seed):
    name = type(cell).__name__
    if context is not None:
        parts = tuple(_converted(cell, c, "context must be a tensor or a tuple of tensors")
                      for c in (context if isinstance(context, (tuple, list)) else (context,)))
        for i, c in enumerate(parts):
            if c.dtype != cell.dtype:
                raise TypeError(f"run({name}): context{'' if len(parts) == 1 else f'[{i}]'} has dtype {c.dtype}, "
                                f"the cell's parameters are {cell.dtype}")
        context = parts if isinstance(context, (tuple, list)) else parts[0]
    if "y_prev" in cell.reads():
        width = getattr(cell, "output_size", None)
        y0 = mg.zeros(B, width, dtype=cell.dtype) if y0 is None else _converted(cell, y0, "y0 must be an array")
        if y0.shape != (B, width):
            raise ShapeError(f"run({name}): y0 has shape {y0.shape}; it is y(t−1) at the first step, "
                             f"(batch, output_size) = {(B, width)}")
    elif y0 is not None:
        raise TypeError(f"run({name}): y0 was given but {name}.step reads no y_prev")
    return Given(T, B, context, feed, y0, int(seed))


def check_fed_targets(cell, sup, given):
    """Teacher forcing feeds the targets back as y(t−1): real-valued ones must be (T, B, output_size)."""
    if sup is None or "y_prev" not in cell.reads() or (given.feed or "teacher") != "teacher":
        return
    ys, width = sup.targets, given.y0.shape[-1]
    if ys.dtype.kind == "f" and ys.shape[2:] != (width,):
        name = type(cell).__name__
        raise ShapeError(f"run({name}): targets have shape {ys.shape}; teacher forcing feeds y(t−1) back as "
                         f"y_prev, {name}'s output of width output_size={width}: expected "
                         f"{ys.shape[:2] + (width,)}")


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


def check_targets(cell, targets, loss_steps, reduction, T, B, batch_first=False):
    """A Supervision for `targets`, or None without them; a clear error naming run, the cell and the shapes."""
    name = type(cell).__name__
    if targets is None:
        if loss_steps is not None:
            raise ValueError(f"run({name}): loss_steps was given without targets; pass targets=ys")
        return None
    if not has_loss(cell):
        raise TypeError(f"run({name}): targets were given but {name} defines no loss(o, y); define one, "
                        "e.g. def loss(self, o, y): return mg.cross_entropy(o, y)")
    if reduction not in REDUCTIONS:
        raise ValueError(f"run({name}): reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(targets, _NOT_ARRAYS):
        raise TypeError(f"run({name}): targets must be an array of shape (T, B) class indices or (T, B, ...) "
                        f"values, got {type(targets).__name__}")
    ys = _converted(cell, targets, "targets must be a numeric array", keep_integers=True)
    if ys.dtype.kind == "f" and ys.dtype != cell.dtype:
        ys = Tensor(ys._data.astype(cell.dtype))
    if ys.dtype.kind not in "fiu":
        raise TypeError(f"run({name}): targets must be integer class indices or real values, got {ys.dtype}")
    if ys.ndim < 2:
        raise ShapeError(f"run({name}): targets have shape {ys.shape}; expected "
                         f"{'(B, T, ...)' if batch_first else '(T, B, ...)'} with (T, B) = ({T}, {B}) as xs")
    if batch_first:
        ys = Tensor(np.swapaxes(ys._data, 0, 1))
    if ys.shape[:2] != (T, B):
        shown = (ys.shape[1], ys.shape[0]) + ys.shape[2:] if batch_first else ys.shape
        raise ShapeError(f"run({name}): targets have shape {shown}; their first two axes must be "
                         f"{'(B, T)' if batch_first else '(T, B)'} = {(B, T) if batch_first else (T, B)}, as xs")
    return Supervision(ys, steps_of(loss_steps, T, name), Targets(ys.shape[1:], ys.dtype.name), reduction)


def steps_of(loss_steps, T, name="run"):
    """Loss steps as ascending indices in [0, T): from None (all), indices (negative from the end) or a mask."""
    if loss_steps is None:
        return list(range(T))
    arr = np.asarray(loss_steps)
    if arr.dtype == bool:
        if arr.shape != (T,):
            raise ShapeError(f"run({name}): a loss_steps mask must have shape ({T},) (one per step), got {arr.shape}")
        steps = np.flatnonzero(arr).tolist()
    elif arr.dtype.kind in "iu" and arr.ndim <= 1:
        bad = [int(i) for i in arr.reshape(-1) if not -T <= i < T]
        if bad:
            raise ValueError(f"run({name}): loss_steps {bad} lie outside the {T} steps (valid: -{T} to {T - 1})")
        steps = sorted({int(i) % T for i in arr.reshape(-1)})
    else:
        raise TypeError(f"run({name}): loss_steps must be step indices or a boolean mask of length {T}, "
                        f"got {arr.dtype} of shape {arr.shape}")
    if not steps:
        raise ValueError(f"run({name}): loss_steps selects no step; leave out targets to run without a loss")
    return steps


def run(cell, xs, state0=None, *, targets=None, loss_steps=None, reduction="sum", context=None, steps=None,
        batch=None, feed=None, y0=None, seed=0, batch_first=False, backend="auto", create_graph=False):
    """Run `cell` over `xs` (or, with xs None, for `steps` steps of `batch` sequences); see the module
    docstring.  context: what a step that names `context` reads at every step; feed, y0, seed: how a
    step that names `y_prev` is fed (rnn.rolled.Feedback).  create_graph=True: the run's backward will
    be recorded (backward(create_graph=True), mg.grad, rnn.flow_regularizer), which the fused kernel's
    cannot be, so "auto" runs the graph (result.fallback says why) and "numba" is refused."""
    if backend not in BACKENDS:
        raise ValueError(f"run: backend must be one of {BACKENDS}, got {backend!r}")
    if create_graph and backend == "numba":
        raise ValueError(f"run({type(cell).__name__}): create_graph=True with backend=\"numba\": the fused "
                         "kernel computes its backward on arrays, so it cannot be recorded and differentiated "
                         "again; use backend=\"graph\" (or \"auto\", which falls back to it)")
    xs, state0 = check_inputs(cell, xs, state0, batch_first, steps, batch)
    T, B = xs.shape[:2] if xs is not None else (int(steps), int(batch))
    sup = check_targets(cell, targets, loss_steps, reduction, T, B, batch_first)
    given = check_given(cell, T, B, context, feed, y0, seed)
    check_fed_targets(cell, sup, given)
    result = reason = None
    if create_graph and backend == "auto":
        reason = CREATE_GRAPH_FALLBACK
    elif backend != "graph":
        try:
            result = _numba_backend()(cell, xs, state0, sup, given)
        except (ImportError, UnsupportedCellError, KernelError) as e:
            if backend == "numba":
                raise
            reason = str(e)
    if result is None:
        result = run_graph(cell, xs, state0, sup, given)
        result.fallback = reason
        if reason and reason != CREATE_GRAPH_FALLBACK:
            _warn_fallback(cell, reason)
    if batch_first:
        result.outputs = result.outputs.transpose(1, 0, *range(2, result.outputs.ndim))
    return result


_run_numba = None  # rnn.kernels.binding.run_numba once imported: an import statement per call cost ~4 us of a 180 us run


def _numba_backend():
    """rnn.kernels.binding.run_numba, imported on first use (rnn imports without Numba)."""
    global _run_numba
    if _run_numba is None:
        from .kernels.binding import run_numba as _run_numba
    return _run_numba


_WARNED = weakref.WeakSet()  # cells already told that "auto" runs them on the graph


def _warn_fallback(cell, reason):
    """Once per cell: the explicit graph is 20-1000x slower than the kernels, which a user should know
    without reading result.fallback."""
    if cell in _WARNED:
        return
    _WARNED.add(cell)
    warnings.warn(f"rnn.run({type(cell).__name__}): backend=\"auto\" runs this cell on the explicit graph, "
                  f"not the fused kernels — {reason} (said once per cell; result.fallback keeps the reason)",
                  UserWarning, stacklevel=3)


def feeds_for(graph, cell, xs, state0, sup=None, given=None):
    """Values for the unfolded graph's leaves: parameters, x(t), the initial state, the targets, the
    context, the step index and y0."""
    named = dict(cell.named_parameters())
    feeds = {pid: named[pname] for pid, pname in graph.params.items()}
    if xs is not None:
        for t, xid in enumerate(graph.x):
            feeds[xid] = xs[t] if xs.requires_grad else Tensor(xs._data[t])
    feeds.update(zip(graph.state0, as_tuple(state0)))
    if sup is not None:
        ys = sup.targets
        feeds.update((yid, ys[t] if ys.requires_grad else Tensor(ys._data[t])) for t, yid in graph.targets.items())
    if given is not None:
        if given.context is not None:
            feeds.update(zip(graph.context, as_tuple(given.context)))
        dtype = cell.dtype
        feeds.update((sid, Tensor(np.asarray(float(t), dtype=dtype))) for t, sid in enumerate(graph.step_ids))
        if graph.feedback0 is not None:
            feeds[graph.feedback0] = given.y0
    return feeds


def total(losses, sup):
    """(L(t) stacked, their sum or mean) from the per-step scalar losses."""
    stacked = mg.stack([l.reshape(()) for l in losses], axis=0)
    return stacked, (stacked.sum() if sup.reduction == "sum" else stacked.mean())


def run_graph(cell, xs, state0, sup=None, given=None):
    """Evaluate the explicit unfolded DAG with engine ops."""
    T, B = (given.steps, given.batch) if given is not None else xs.shape[:2]
    rolled = cell.rolled(B, sup and sup.spec, context=given and given.context_spec, feed=given and given.feed,
                         inputs=xs is not None, seed=given.seed if given else 0)
    graph = unfold(rolled, T, sup and sup.steps)
    if sup is not None:
        graph.reduction = sup.reduction
    values = graph.evaluate(feeds_for(graph, cell, xs, state0, sup, given))
    graph.tensors = values
    states = [tuple(values[i].retain_grad() for i in ids) for ids in graph.state_out]
    outputs = mg.stack([values[i] for i in graph.outputs], axis=0)
    # the last step's states, except a backward chain's, which ends at step 1
    final = states[-1] if list(graph.final) == list(graph.state_out[-1]) else tuple(values[i] for i in graph.final)
    final = final if len(final) > 1 else final[0]
    result = RunResult(outputs, final, graph, "graph", states)
    if graph.fed:
        result.fed = mg.stack([values[i] for i in graph.fed], axis=0)
    if sup is not None:
        result.losses, result.loss = total([values[i] for i in graph.losses.values()], sup)
        result.loss_steps, result.reduction = sup.steps, sup.reduction
        graph.loss_value = result.loss.item()
    return result
