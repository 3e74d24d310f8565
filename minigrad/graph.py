"""The recorded graph as plain data, and evaluating such a graph again.

One small representation serves the engine (`trace`), the rnn package (whose
rolled and unfolded graphs are subclasses that add what is recurrent about
them), the visualizer and the kernel generator.  Node ids are assigned in
topological order, never from `id()`, so the same computation always gives the
same graph.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from .tensor import PRIMITIVES, Tensor, toposort

# What a node is to the computation; the rnn package adds the rest (see rnn.rolled).
ROLES = ("input", "parameter", "constant", "state", "target", "context", "step", "feedback", "op", "output", "loss")
VARIADIC = {"concatenate"}


class CycleError(ValueError):
    """A graph whose edges form a cycle (in a recurrent net: one that passes through no delay)."""


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
        """Node ids along one cycle, or None."""
        children, state = self.children(), {}
        for start in self.nodes:
            if start in state:
                continue
            path, stack = [], [(start, iter(children[start]))]
            state[start] = "open"
            path.append(start)
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = "done"
                    stack.pop()
                    path.pop()
                elif state.get(nxt) == "open":
                    return path[path.index(nxt):] + [nxt]
                elif nxt not in state:
                    state[nxt] = "open"
                    path.append(nxt)
                    stack.append((nxt, iter(children[nxt])))
        return None

    def topological_order(self):
        """Node ids, parents first; a cycle is an error."""
        cycle = self.find_cycle()
        if cycle:
            names = " -> ".join(f"{c} ({self.nodes[c].label})" for c in cycle)
            raise CycleError(f"graph has a cycle that passes through no delay: {names}")
        pos = {nid: i for i, nid in enumerate(self.nodes)}
        children, indeg = self.children(), {nid: 0 for nid in self.nodes}
        for kids in children.values():
            for k in kids:
                indeg[k] += 1
        # Kahn's algorithm; the heap makes ties follow insertion order, so the order is deterministic.
        ready = [(pos[n], n) for n in self.nodes if indeg[n] == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, nid = heapq.heappop(ready)
            order.append(nid)
            for k in children[nid]:
                indeg[k] -= 1
                if indeg[k] == 0:
                    heapq.heappush(ready, (pos[k], k))
        return order

    def evaluate(self, feeds):
        """Run the graph with engine ops, so the result can be differentiated.

        feeds: node id -> Tensor for every leaf that is not a constant.
        Returns node id -> Tensor for every node.
        """
        values, arguments = {}, self.arguments()
        for nid in self.topological_order():
            node = self.nodes[nid]
            if node.op == "leaf":
                if node.role == "constant" and nid not in feeds:
                    values[nid] = Tensor(node.value)
                elif nid in feeds:
                    values[nid] = feeds[nid]
                else:
                    raise KeyError(f"evaluate: no value fed for {node.role} node {nid} ({node.label}, shape {node.shape})")
                continue
            args = [values[p] for p in arguments[nid]]
            fn = PRIMITIVES[node.op]
            values[nid] = fn(args, **node.attrs) if node.op in VARIADIC else fn(*args, **node.attrs)
        return values


def trace(*roots, roles=None):
    """The graph recorded behind `roots`, as plain data.

    roles: optional {id(tensor): (role, name)} to label particular tensors
    (the rnn package marks the step input, the carried state, outputs and losses this way).
    """
    roles = roles or {}
    order = toposort(*roots)
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
                          t._data if role == "constant" else None))
        edges.extend(Edge(ids[id(p)], ids[id(t)], slot) for slot, p in enumerate(t._parents))
    g = Graph(nodes, edges)
    g.tensors = {ids[id(t)]: t for t in order}
    return g
