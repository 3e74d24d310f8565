"""The rolled graph: a network's step, traced once, its state fed back through a delay.

This is the textbook's picture of a recurrent net (Goodfellow et al., Figs. 10.2
left and 10.3): a finite graph with a cycle, every cycle passing through a delay::

    x(t) ─┐                          y(t) ─┐
          ├─ step ─> h(t) ─ output ─> o(t) ├─ loss ─> L(t)
    h(t−1)┘            │                   ┘
      ^                │
      └──── delay ─────┘

`RolledGraph` is an engine `Graph` of the traced ops (step, `cell.output`, and
`cell.loss` when there are targets) plus what is recurrent about it:

    x        id of the step input x(t)
    loops    one `Loop(name, input, output, delay)` per carried state: the
             state made at step t (`output`) is read at step t + delay (`input`)
    output   id of o(t), what the step emits (a state's own id when the cell
             emits its state)
    target   id of the target y(t), or None: no loss was traced
    loss     id of L(t), a scalar, or None
    params   {node id: dotted parameter name}; symbols {parameter name: the symbol pictures use}
    context  ids of the context the step reads at every step (encoder outputs, a conditioning vector)
    step_index  id of the step index t the step reads, or None
    feedback    a `Feedback` when the step reads its previous output or target y(t−1), else None
    cell     the cell's class name;  batch  the batch the trace ran at

Roles: x(t) "input", the carried state in and out "state", o(t) "output",
y(t) "target", L(t) "loss", "context", t "step", y(t−1) "feedback",
"parameter", "constant", "op".

A step asks for more than (x, state) by naming parameters — ``def step(self, x,
state, context)``, ``t``, ``y_prev`` — and `Cell.reads` says which; x is None
for a network without per-step input.  A cell's class attribute ``delays =
{"h_slow": 2}`` makes the step read that state from d steps back.  The same graph is
drawn by `viz`, unfolded by `rnn.unfold`, evaluated by `rnn.run`'s graph backend
and compiled by the kernel generator.  Targets are inputs of the graph, not
constants: one rolled graph serves every batch.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from minigrad import Tensor, enable_grad
from minigrad.errors import ShapeError
from minigrad.graph import Graph, trace
from minigrad.walk import CycleError, toposort


@dataclass(frozen=True)
class Loop:
    """A carried state: `output` made at step t is what the step reads as `input` at step t + delay."""
    name: str
    input: str
    output: str
    delay: int = 1


@dataclass(frozen=True)
class Feedback:
    """The step's y(t−1): `input` is its node; it is fed o(t−1) ("output"), the one-hot of o(t−1)'s
    largest entry ("argmax") or of a class drawn from softmax(o(t−1)) ("sample") — free-running,
    Goodfellow et al. Fig. 10.6 right — or the target y(t−1) ("teacher": teacher forcing, left);
    at the first step, y0."""
    input: str
    feed: str = "output"
    seed: int = 0      # "sample": step t draws with seed (seed, t)


FEEDS = ("output", "argmax", "sample", "teacher")


@dataclass(frozen=True)
class Context:
    """The shapes and dtypes of what a step reads as its context, and whether it is one tensor or a tuple."""
    shapes: tuple
    dtypes: tuple
    single: bool = True

    @classmethod
    def of(cls, context):
        parts = context if isinstance(context, (tuple, list)) else (context,)
        return cls(tuple(p.shape for p in parts), tuple(p.dtype.name for p in parts),
                   not isinstance(context, (tuple, list)))


@dataclass(frozen=True)
class Targets:
    """What y(t) looks like at one step: `shape` (batch first) and `dtype`; integers are class indices."""
    shape: tuple
    dtype: str

    @property
    def classes(self):
        return np.dtype(self.dtype).kind in "iu"


class RolledGraph(Graph):
    """A traced step with its delays; see the module docstring."""

    def __init__(self, nodes=(), edges=(), *, cell="cell", batch=1, x=None, loops=(), output=None,
                 target=None, loss=None, params=None, context=(), step_index=None, feedback=None,
                 symbols=None, gates=None, frozen=()):
        super().__init__(nodes, edges)
        self.cell, self.batch, self.x = cell, batch, x
        self.loops = list(loops)
        self.output, self.target, self.loss = output, target, loss
        self.params = dict(params or {})
        self.context, self.step_index, self.feedback = list(context), step_index, feedback
        self.symbols = dict(symbols or {})  # parameter name -> the symbol pictures use (the cell's `symbols`)
        self.gates = gates                  # for gated cells: the gates whose rows U, W and b stack
        self.frozen = set(frozen)           # ids of parameters that learn nothing (no gradient)

    def __repr__(self):
        return f"RolledGraph({self.cell}, {len(self.nodes)} nodes, states {[lp.name for lp in self.loops]})"

    @property
    def state_names(self):
        return [lp.name for lp in self.loops]

    def read_loops(self):
        """The loops whose state the step actually reads (a step may ignore its state, Fig. 10.4)."""
        used = {e.src for e in self.edges}
        return [lp for lp in self.loops if lp.input in used]


def as_tuple(state):
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def detach_state(state):
    """The same values cut from the graph; a tensor stays a tensor, a tuple a tuple."""
    parts = tuple(s.detach() for s in as_tuple(state))
    return parts if isinstance(state, (tuple, list)) else parts[0]


def check_state(cell, what, state, expected):
    """The carried state must keep its structure and shapes from step to step."""
    name = type(cell).__name__
    got, want = as_tuple(state), as_tuple(expected)
    if len(got) != len(want):
        raise ValueError(f"{name}: {what} has {len(got)} tensor(s), the cell carries {len(want)} "
                         f"(shapes {[tuple(w.shape) for w in want]})")
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(g, Tensor):
            raise TypeError(f"{name}: {what}[{i}] is a {type(g).__name__}, expected a Tensor of shape {w.shape}")
        if g.shape != w.shape:
            label = cell.state_names[i] if i < len(cell.state_names) else i
            raise ValueError(f"{name}: {what} {label!s} has shape {g.shape}, expected {w.shape} "
                             "(the carried state keeps its shape from step to step)")


def state_names(cell, n):
    names = tuple(cell.state_names)
    return names if len(names) == n else tuple(f"s{i}" for i in range(n))


def has_loss(cell):
    from .cell import Cell
    return type(cell).loss is not Cell.loss


def rolled(cell, batch=1, targets=None, *, context=None, feed=None, inputs=True, seed=0):
    """Trace `cell`'s step (and its output, and its loss if `targets` says what y(t) is) and close the loop.

    targets: None (no loss), a `Targets`, or "auto": the loss with class-index
    targets if it accepts them, else with targets shaped like o(t), else none
    (for drawing a network without data).
    context: a `Context` (shapes of what the step reads as `context`), needed when it reads one.
    feed: how y(t−1) is fed when the step reads `y_prev` (see Feedback; default "teacher" with
    targets, else "output"); seed: for feed="sample".
    inputs: False for a network with no per-step input: the step gets x = None.

    The trace runs on random placeholder values of batch `batch`; shapes in the
    graph are those of that batch.  A second trace on other values — other
    inputs, states, targets and parameter values — makes sure the graph does
    not depend on them: a step that leaves the engine (``.data``, ``.numpy()``,
    ``detach()``; use ``mg.stop_gradient``) or branches on values would
    otherwise be frozen into constants, silently.
    """
    if targets == "auto":
        targets = _guess_targets(cell, batch)
    elif targets is not None and not has_loss(cell):
        raise TypeError(f"{type(cell).__name__}: targets were given but the cell defines no loss(o, y); "
                        "define one to put L(t) in the graph")
    if feed is not None and feed not in FEEDS:
        raise ValueError(f"{type(cell).__name__}: feed must be one of {FEEDS}, got {feed!r}")
    if feed == "teacher" and targets is None:
        raise ValueError(f"{type(cell).__name__}: feed='teacher' feeds the targets y(t−1): pass targets")
    how = _How(targets, context, feed, inputs, seed,
               frozenset(id(p) for p in cell.parameters() if not p.requires_grad))
    with _all_recorded(cell):
        graph = _trace(cell, batch, how, seed=0)
        with _other_parameter_values(cell, np.random.default_rng(2)):
            other = _trace(cell, batch, how, seed=1)
    frozen = [n for n in graph.nodes.values() if n.role == "constant"
              and (n.id not in other.nodes or not np.array_equal(n.value, other.nodes[n.id].value))]
    if [n.op for n in graph.nodes.values()] != [n.op for n in other.nodes.values()] or frozen:
        what = f" (node {frozen[0].id}, shape {frozen[0].shape})" if frozen else ""
        raise ValueError(f"{type(cell).__name__}.step: its graph depends on the values it is given{what}: "
                         "the step leaves the engine (.data, .numpy(), detach() of an input, a state or a "
                         "parameter — use mg.stop_gradient to cut a gradient) or branches on tensor values; "
                         "write it with engine ops only")
    return check_delays(graph)


@dataclass(frozen=True)
class _How:
    """What a trace is given besides the cell: targets, context, how y(t−1) is fed, whether x exists."""
    targets: object = None
    context: object = None
    feed: object = None
    inputs: bool = True
    seed: int = 0
    frozen: frozenset = frozenset()  # ids of the parameters that are frozen


def _guess_targets(cell, batch):
    if not has_loss(cell) or cell.reads() & {"context"}:
        return None
    plain = _trace(cell, batch, _How(), seed=0)
    width = plain.nodes[plain.output].shape
    for spec in (Targets((batch,), "int64"), Targets(tuple(width), np.dtype(cell.dtype).name)):
        try:
            _trace(cell, batch, _How(spec), seed=0)
            return spec
        except (TypeError, ValueError, IndexError, ShapeError):
            continue
    return None


@contextmanager
def _all_recorded(cell):
    """Frozen parameters require grad inside the block (the trace must record the ops on them, W.T
    included, or their values would be frozen into the graph); as they were after."""
    frozen = [p for p in cell.parameters() if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad = True
        yield
    finally:
        for p in frozen:
            p.requires_grad, p.grad = False, None


@contextmanager
def _other_parameter_values(cell, rng):
    """Every parameter holds other values (same shape and dtype) inside the block, its own after."""
    params = cell.parameters()
    saved = [p._data for p in params]
    try:
        for p in params:  # straight into _data: this is no write that any recorded graph must notice
            p._data = (rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)).astype(p.dtype)
        yield
    finally:
        for p, arr in zip(params, saved):
            p._data = arr


def _placeholder_targets(spec, o, rng):
    if spec.classes:
        return Tensor(rng.integers(0, max(1, o.shape[-1]), spec.shape).astype(spec.dtype))
    # requires_grad, as x's placeholder: ops on the targets alone (y - o is o + neg(y)) must be recorded
    return Tensor(rng.uniform(-1, 1, spec.shape).astype(spec.dtype), requires_grad=True)


def _extras(cell, batch, how, rng):
    """Placeholders for what the step reads besides x and its state: {parameter name: value}, and the
    roles to give them.  Every one requires grad, as x's does: ops on them alone must be recorded."""
    name, reads, dtype = type(cell).__name__, cell.reads(), cell.dtype
    extras, roles = {}, {}
    if "context" in reads:
        if how.context is None:
            raise TypeError(f"{name}.step reads a context: pass context= to rnn.run (or a Context to rolled)")
        parts = tuple(Tensor(rng.uniform(-1, 1, s).astype(d), requires_grad=True)
                      for s, d in zip(how.context.shapes, how.context.dtypes))
        extras["context"] = parts[0] if how.context.single else parts
        roles.update((id(p), ("context", "context" if how.context.single else f"context[{i}]"))
                     for i, p in enumerate(parts))
    elif how.context is not None:
        raise TypeError(f"{name}: a context was given but {name}.step reads none; name a parameter "
                        "`context` (def step(self, x, state, context)) to read it")
    if "t" in reads:
        extras["t"] = Tensor(np.asarray(float(rng.integers(1, 64)), dtype=dtype), requires_grad=True)
        roles[id(extras["t"])] = ("step", "t")
    if "y_prev" in reads:
        width = getattr(cell, "output_size", None)
        if not isinstance(width, int):
            raise TypeError(f"{name}.step reads y_prev, the previous output: give the cell an integer "
                            "attribute output_size (the width of o(t))")
        extras["y_prev"] = Tensor(rng.uniform(-1, 1, (batch, width)).astype(dtype), requires_grad=True)
        roles[id(extras["y_prev"])] = ("feedback", "y(t−1)")
    elif how.feed is not None:
        raise TypeError(f"{name}: feed={how.feed!r} was given but {name}.step reads no y_prev")
    return extras, roles


def _trace(cell, batch, how, seed):
    rng = np.random.default_rng(seed)
    name = type(cell).__name__
    targets = how.targets
    template = as_tuple(cell.initial_state(batch))
    x = Tensor(rng.uniform(-1, 1, (batch, cell.input_size)).astype(cell.dtype), requires_grad=True) \
        if how.inputs else None
    states = tuple(Tensor(rng.uniform(-1, 1, s.shape).astype(s.dtype), requires_grad=True) for s in template)
    extras, extra_roles = _extras(cell, batch, how, rng)
    with enable_grad():  # a trace must record even when called under no_grad
        new = as_tuple(cell.step(x, states[0] if len(states) == 1 else states, **extras))
        check_state(cell, "step's returned state", new, states)
        o = cell.output(new if len(new) > 1 else new[0],
                        **({"context": extras["context"]} if "context" in cell.reads("output") else {}))
        if not isinstance(o, Tensor):
            raise TypeError(f"{name}.output must return one Tensor (o(t)), got {type(o).__name__}")
        y = loss = None
        if targets is not None:
            y = _placeholder_targets(targets, o, rng)
            loss = cell.loss(o, y)
            if not isinstance(loss, Tensor) or loss.size != 1:
                got = f"shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
                raise TypeError(f"{name}.loss must return a scalar Tensor L(t), got {got}")
            if not loss.requires_grad:
                raise ValueError(f"{name}.loss: L(t) does not depend on the step's output o(t)")
    names = state_names(cell, len(states))

    roles = {id(p): ("parameter", n) for n, p in cell.named_parameters()}
    roles.update(extra_roles)
    if x is not None:
        roles[id(x)] = ("input", "x")
    for nm, s_in, s_out in zip(names, states, new):
        if s_out is s_in or (x is not None and s_out is x) or not s_out.requires_grad:
            raise ValueError(f"{name}.step: the new state {nm} must be computed by ops "
                             "from the step's inputs, not passed through or made from constants only")
        roles[id(s_in)] = ("state", nm)
        roles[id(s_out)] = ("state", nm)
    if id(o) not in roles:
        roles[id(o)] = ("output", "o")
    roots = list(new) + [o]
    if loss is not None:
        roles[id(y)] = ("target", "y")
        roles[id(loss)] = ("loss", "L")
        roots += [loss, y]
    leaves = [t for t in (x, extras.get("t"), extras.get("y_prev")) if t is not None]
    leaves += list(as_tuple(extras["context"])) if "context" in extras else []
    graph = trace(*roots, *leaves, *states, roles=roles)
    node_of = {id(t): nid for nid, t in graph.tensors.items()}
    delays = delays_of(cell, names)
    loops = [Loop(nm, node_of[id(s_in)], node_of[id(s_out)], delays[nm]) for nm, s_in, s_out in zip(names, states, new)]
    ids = lambda t: node_of[id(t)] if t is not None else None  # noqa: E731
    feedback = Feedback(node_of[id(extras["y_prev"])], how.feed or ("teacher" if targets else "output"),
                        how.seed) if "y_prev" in extras else None
    out = RolledGraph(graph.nodes.values(), graph.edges, cell=getattr(cell, "display_name", None) or name, batch=batch, x=ids(x), loops=loops,
                      output=node_of[id(o)], target=ids(y), loss=ids(loss),
                      params={node_of[id(p)]: n for n, p in cell.named_parameters() if id(p) in node_of},
                      context=[node_of[id(c)] for c in as_tuple(extras["context"])] if "context" in extras else [],
                      step_index=ids(extras.get("t")), feedback=feedback,
                      symbols=getattr(cell, "symbols", None), gates=getattr(cell, "gates", None),
                      frozen={node_of[id(p)] for p in cell.parameters() if id(p) in node_of and id(p) in how.frozen})
    out.tensors = graph.tensors
    return out


def delays_of(cell, names):
    """{state name: its delay}, from the cell's class attribute `delays` (1 for a state not named there)."""
    delays = dict(getattr(cell, "delays", None) or {})
    unknown = sorted(set(delays) - set(names))
    if unknown:
        raise ValueError(f"{type(cell).__name__}.delays names {unknown}, which are not states "
                         f"(the states are {list(names)})")
    for nm, d in delays.items():
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{type(cell).__name__}.delays[{nm!r}] must be an integer number of steps, got {d!r}")
    return {nm: int(delays.get(nm, 1)) for nm in names}


def check_delays(graph):
    """Every cycle of a rolled graph must pass through delays that sum to a number of steps other than
    zero, all of one sign: its data edges alone form no cycle, no state's loop has delay 0, and
    (with delays of both signs, a bidirectional net) the unfolding has no cycle either."""
    try:
        graph.topological_order()
    except CycleError as e:
        raise CycleError(f"rolled graph: {e}") from None
    arguments = graph.arguments()
    loops = getattr(graph, "loops", ())
    for lp in loops:
        if lp.delay == 0:
            # the loop's own edge, output back to input, closes the cycle the walk then finds
            try:
                toposort([lp.output], lambda n: arguments[n] + ([lp.output] if n == lp.input else []))
                path = [lp.input, lp.output]
            except CycleError as e:
                path = e.cycle[e.cycle.index(lp.input):] if lp.input in e.cycle else e.cycle
            names = " -> ".join(f"{n} ({graph.nodes[n].label})" for n in path)
            raise CycleError(f"rolled graph: the cycle {names} -> (delay {lp.delay}) -> {lp.input} has a total "
                             f"delay of {lp.delay} steps; a recurrence must reach back at least one step "
                             f"(set delays[{lp.name!r}] >= 1, or <= -1 to run backward in time)")
    if {lp.delay > 0 for lp in loops} == {True, False}:
        from .unfold import unfold
        try:
            unfold(graph, 2 * max(abs(lp.delay) for lp in loops) + 1).topological_order()
        except CycleError as e:
            raise CycleError(f"rolled graph: states carried forward and backward in time feed each other "
                             f"within a step, so their delays cancel around a cycle ({e})") from None
    return graph
