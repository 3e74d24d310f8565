"""The recorded graph as plain data, and evaluating such a graph again.

One small representation serves the engine (`trace`), the rnn package (whose
rolled and unfolded graphs are subclasses that add what is recurrent about
them), the visualizer and the kernel generator.  Node ids are assigned in
topological order, never from `id()`, so the same computation always gives the
same graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .op import PRIMITIVES
from .tensor import Tensor
from .walk import CycleError, toposort

# What a node is to the computation; the rnn package adds the rest (see rnn.rolled).
ROLES = ("input", "parameter", "constant", "state", "target", "context", "step", "feedback", "op", "output", "loss")


@dataclass(frozen=True)
class Node:
    id: str
    op: str                 # primitive name, or "leaf"
    role: str               # one of ROLES
    shape: tuple
    dtype: str
    name: str | None = None
    attrs: dict = field(default_factory=dict, compare=False)
    value: object = field(default=None, compare=False, repr=False)  # a constant's array
    scope: tuple = ()       # the mg.scope path the op was recorded in

    @property
    def label(self):
        return self.name or (self.op if self.op != "leaf" else self.role)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    slot: int = 0           # argument position at dst


class Graph:
    """Nodes (in insertion order) and edges from parent to child."""

    def __init__(self, nodes=(), edges=()):
        self.nodes = {n.id: n for n in nodes}
        self.edges = list(edges)
        self.tensors = {}   # node id -> the live Tensor, for graphs traced from the engine

    def __repr__(self):
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges)"

    def by_role(self, role):
        return [n for n in self.nodes.values() if n.role == role]

    def arguments(self):
        """node id -> ids of its arguments in argument order."""
        args = {nid: [] for nid in self.nodes}
        for e in sorted(self.edges, key=lambda e: e.slot):
            args[e.dst].append(e.src)
        return args

    def inputs_of(self, node_id):
        return self.arguments()[node_id]

    def children(self):
        children = {nid: [] for nid in self.nodes}
        for e in self.edges:
            children[e.src].append(e.dst)
        return children

    def find_cycle(self):
        """Node ids along one cycle (each an argument of the next), or None."""
        try:
            self.topological_order()
        except CycleError as e:
            return e.cycle
        return None

    def topological_order(self):
        """Node ids, arguments first (ties in insertion order); a cycle is an error naming its nodes."""
        arguments = self.arguments()
        try:
            return toposort(self.nodes, arguments.__getitem__)
        except CycleError as e:
            names = " -> ".join(f"{c} ({self.nodes[c].label})" for c in e.cycle)
            raise CycleError(f"graph has a cycle that passes through no delay: {names}", e.cycle) from None

    def evaluate(self, feeds):
        """Run the graph with engine ops, so the result can be differentiated.

        feeds: node id -> Tensor for every leaf that is not a constant.
        Returns node id -> Tensor for every node.
        """
        values, arguments, ops = {}, self.arguments(), []
        for nid in self.topological_order():
            node = self.nodes[nid]
            if node.op != "leaf":
                ops.append(nid)
            elif node.role == "constant" and nid not in feeds:
                values[nid] = Tensor(node.value)
            elif nid in feeds:
                values[nid] = feeds[nid]
            else:
                raise KeyError(f"evaluate: no value fed for {node.role} node {nid} ({node.label}, shape {node.shape})")
        return run_ops(ops, lambda nid: (self.nodes[nid].op, arguments[nid], self.nodes[nid].attrs), values)


def run_ops(order, node, values):
    """The one evaluator: values[nid] for each nid of `order` (arguments first), by the engine op that
    node(nid) = (op, argument ids, attrs) names, from `values` (which holds the leaves); returns values."""
    for nid in order:
        op, args, attrs = node(nid)
        prim = PRIMITIVES[op]
        args = [values[a] for a in args]
        values[nid] = prim(args, **attrs) if prim.variadic else prim(*args, **attrs)
    return values


def trace(*roots, roles=None):
    """The graph recorded behind `roots`, as plain data.

    roles: optional {id(tensor): (role, name)} to label particular tensors
    (the rnn package marks the step input, the carried state, outputs and losses this way).
    """
    roles = roles or {}
    order = toposort(roots, lambda t: t._parents)
    ids = {id(t): f"n{i}" for i, t in enumerate(order)}
    root_ids = {id(r) for r in roots}
    nodes, edges = [], []
    for t in order:
        role, name = roles.get(id(t), (None, t.name))
        if role is None:
            if t.op is not None:
                role = "output" if id(t) in root_ids else "op"
            elif getattr(t, "is_parameter", False):
                role = "parameter"
            else:
                role = "input" if (t.requires_grad or t.name) else "constant"
        nodes.append(Node(ids[id(t)], t.op or "leaf", role, t.shape, t.dtype.name, name, dict(t.attrs),
                          t._data if role == "constant" else None, t._scope))
        edges.extend(Edge(ids[id(p)], ids[id(t)], slot) for slot, p in enumerate(t._parents))
    g = Graph(nodes, edges)
    g.tensors = {ids[id(t)]: t for t in order}
    return g
