"""The one graph walk: every traversal in the project is `toposort` with its own `parents`.

``toposort(roots, parents)`` lists the nodes reachable from `roots` through
`parents(node)`, each after all of its parents (depth first, iteratively: an
unrolled recurrent net is far deeper than Python's recursion limit).  It finds
cycles too: meeting a node that is still open raises `CycleError` with the
nodes along the cycle, which is how a graph is checked for one.
"""
from __future__ import annotations


class CycleError(ValueError):
    """A graph whose edges form a cycle (in a recurrent net: one that passes through no delay)."""

    def __init__(self, message, cycle=()):
        super().__init__(message)
        self.cycle = list(cycle)


_OPEN, _DONE = 1, 2


def toposort(roots, parents):
    """Nodes reachable from `roots` (hashable), parents first; CycleError if a cycle is met."""
    order, state = [], {}
    for root in roots:
        if root in state:
            continue
        state[root] = _OPEN
        stack = [(root, iter(parents(root)))]
        while stack:
            node, pending = stack[-1]
            for p in pending:
                seen = state.get(p)
                if seen is None:
                    state[p] = _OPEN
                    stack.append((p, iter(parents(p))))
                    break
                if seen == _OPEN:  # p is on the path from a root down to here: a cycle
                    path = [n for n, _ in stack]
                    cycle = path[path.index(p):] + [p]
                    raise CycleError(f"cycle through {len(cycle) - 1} node(s)", cycle[::-1])
            else:
                stack.pop()
                state[node] = _DONE
                order.append(node)
    return order
