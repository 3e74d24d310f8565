"""The rolled graph: one traced step whose state outputs feed its state inputs through a delay.

This is the textbook's picture of a recurrent net (Goodfellow et al., Fig.
10.2, left): a finite graph with a cycle, where every cycle passes through a
one-step delay.  Its nodes are the engine's own (`minigrad.graph.Node`), with
the attributes needed to evaluate them again, so the same graph is drawn by
`viz`, unfolded by `rnn.unfold` and compiled by the kernel generator.

Roles in a rolled graph: the step input ``x`` ("input"), the carried state
coming in ("state", named after `cell.state_names`), the new state going out
("output", same names), parameters (named as in `cell.named_parameters()`),
constants and ops.  `graph.meta` records::

    cell     the cell's class name
    x        id of the step-input node
    states   [(name, id of state input, id of state output), ...]
    params   {node id: dotted parameter name}
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from minigrad import Tensor, enable_grad
from minigrad.graph import CycleError, Edge, trace


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


def rolled(cell, batch=1):
    """Trace `cell.step` once and close its loop with delay edges.

    The trace runs on random placeholder values of batch `batch`; shapes in the
    graph are those of that batch.  A second trace on other values — other
    inputs, states and parameter values — makes sure the graph does not depend
    on them: a step that leaves the engine (``.data``, ``.numpy()``,
    ``detach()``; use ``mg.stop_gradient``) or branches on values would
    otherwise be frozen into constants, silently.
    """
    graph = _trace(cell, batch, seed=0)
    with _other_parameter_values(cell, np.random.default_rng(2)):
        other = _trace(cell, batch, seed=1)
    frozen = [n for n in graph.nodes.values() if n.role == "constant"
              and (n.id not in other.nodes or not np.array_equal(n.value, other.nodes[n.id].value))]
    if [n.op for n in graph.nodes.values()] != [n.op for n in other.nodes.values()] or frozen:
        what = f" (node {frozen[0].id}, shape {frozen[0].shape})" if frozen else ""
        raise ValueError(f"{type(cell).__name__}.step: its graph depends on the values it is given{what}: "
                         "the step leaves the engine (.data, .numpy(), detach() of an input, a state or a "
                         "parameter — use mg.stop_gradient to cut a gradient) or branches on tensor values; "
                         "write it with engine ops only")
    return check_delays(graph)


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


def _trace(cell, batch, seed):
    rng = np.random.default_rng(seed)
    template = as_tuple(cell.initial_state(batch))
    x = Tensor(rng.uniform(-1, 1, (batch, cell.input_size)).astype(cell.dtype), requires_grad=True)
    states = tuple(Tensor(rng.uniform(-1, 1, s.shape).astype(s.dtype), requires_grad=True) for s in template)
    with enable_grad():  # a trace must record even when called under no_grad
        new = as_tuple(cell.step(x, states[0] if len(states) == 1 else states))
    check_state(cell, "step's returned state", new, states)
    names = state_names(cell, len(states))

    roles = {id(p): ("parameter", n) for n, p in cell.named_parameters()}
    roles[id(x)] = ("input", "x")
    for name, s_in, s_out in zip(names, states, new):
        if s_out is s_in or s_out is x or not s_out.requires_grad:
            raise ValueError(f"{type(cell).__name__}.step: the new state {name} must be computed by ops "
                             "from the step's inputs, not passed through or made from constants only")
        roles[id(s_in)] = ("state", name)
        roles[id(s_out)] = ("output", name)
    graph = trace(*new, x, *states, roles=roles)
    node_of = {id(t): nid for nid, t in graph.tensors.items()}
    pairs = [(name, node_of[id(s_in)], node_of[id(s_out)]) for name, s_in, s_out in zip(names, states, new)]
    graph.edges.extend(Edge(out_id, in_id, kind="delay") for _, in_id, out_id in pairs)
    graph.meta = {"cell": type(cell).__name__, "x": node_of[id(x)], "states": pairs, "batch": batch,
                  "params": {node_of[id(p)]: n for n, p in cell.named_parameters() if id(p) in node_of}}
    return graph


def check_delays(graph):
    """Every cycle of a rolled graph must pass through a delay edge."""
    try:
        graph.topological_order()
    except CycleError as e:
        raise CycleError(f"rolled graph: {e}") from None
    return graph
