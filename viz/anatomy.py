"""What a rolled graph is made of, for drawing it as the book does: no Graphviz here.

    parts         the step (what the carried states need), the output head (what o(t) needs
                  besides) and the loss (what L(t) needs besides)
    symbols       each parameter's symbol: the cell's `symbols` mapping (the book's U, W, V, b, c
                  for the built-in cells), else its attribute name
    acts_on       the per-step value each parameter acts on — the input x(t), a state read at
                  t − d, the context, a state made at t (the output head's V), o(t) (a loss's
                  weights) — found where the parameter first meets data of the step
    on_edge       the reverse for weight matrices: the symbols to write on the edge from a value,
                  as the book writes U on x → h, W on h → h and V on h → o
    hidden        parameters and what is made from them alone (W.T, slices of W): drawn as
                  labels, not as nodes
    folded        products with a parameter's plain transpose, x @ W.T, drawn as one op "x·Wᵀ"
"""
from __future__ import annotations

from minigrad.walk import toposort


class Anatomy:
    def __init__(self, rolled):
        self.rolled = rolled
        args = self.arguments = rolled.arguments()
        children = rolled.children()
        self.step, self.head, self.loss = _parts(rolled, args)
        names = rolled.params
        cell_symbols = getattr(rolled, "symbols", None) or {}
        self.symbols = {pid: cell_symbols.get(name, name) for pid, name in names.items()}

        # the per-step values a parameter can act on, each counting as its own source
        fb = rolled.feedback
        sources = [rolled.x, rolled.step_index, fb.input if fb else None, rolled.target, *rolled.context]
        sources += [lp.input for lp in rolled.loops] + [lp.output for lp in rolled.loops] + [rolled.output]
        self.sources = [s for s in dict.fromkeys(sources) if s is not None]
        deps = {}
        for nid in rolled.topological_order():
            deps[nid] = {nid} if nid in self.sources else set().union(*(deps[a] for a in args[nid]))
        self.deps = deps
        self.hidden = {nid for nid, d in deps.items() if not d and rolled.nodes[nid].role in ("parameter", "op")
                       and _param_made(rolled, args, nid)}

        self.acts_on = {}
        for pid in names:
            found = []
            for meet in toposort(children[pid], lambda n: children[n] if n in self.hidden else ()):
                if meet in self.hidden:
                    continue
                others = set().union(*(deps[a] for a in args[meet] if a not in self.hidden))
                if len(others) == 1:
                    found.append(next(iter(others)))
            self.acts_on[pid] = list(dict.fromkeys(found))
        self.on_edge = {}
        for pid, srcs in self.acts_on.items():
            if len(rolled.nodes[pid].shape) >= 2:
                for s in srcs:
                    self.on_edge.setdefault(s, [])
                    if self.symbols[pid] not in self.on_edge[s]:
                        self.on_edge[s].append(self.symbols[pid])

        self.folded = {}
        for nid, node in rolled.nodes.items():
            if node.op == "matmul":
                left, right = args[nid]
                r = rolled.nodes[right]
                if r.op == "transpose" and r.attrs.get("axes") in (None, (1, 0)) and args[right][0] in names:
                    self.folded[nid] = (left, args[right][0])

    def spine(self):
        """Rolled ids along one path of ops from the first state the step reads to the state it makes:
        drawn in a straight line, they keep an unrolled ops view's steps in one row."""
        loops = self.rolled.read_loops()
        if not loops:
            return []
        start, node, path = loops[0].input, self.rolled.loops[0].output, []
        while node != start:
            path.append(node)
            node = next((a for a in self.arguments[node] if start in self.deps[a]), None)
            if node is None:
                return []
        return path[::-1]

    def edge_label(self, source):
        """The symbols to write on the edge out of `source` (a rolled id), or None."""
        syms = self.on_edge.get(source)
        return ", ".join(syms) if syms else None

    def param_table(self):
        """(symbol, name, shape) per parameter, symbol order then name."""
        rows = [(self.symbols[pid], name, self.rolled.nodes[pid].shape) for pid, name in self.rolled.params.items()]
        return sorted(rows, key=lambda r: (r[0] == r[1], r[0], r[1]))

    def op_symbols(self, nid):
        """Symbols of the hidden parameter values an op reads (its label names them instead of an edge)."""
        out = []
        for a in self.arguments[nid]:
            if a in self.hidden:
                out += [self.symbols[p] for p in _params_under(self.rolled, self.arguments, a)]
        return list(dict.fromkeys(out))


def _parts(rolled, args):
    step = set(toposort([lp.output for lp in rolled.loops], args.__getitem__))
    head = set(toposort([rolled.output], args.__getitem__)) - step
    loss = (set(toposort([rolled.loss], args.__getitem__)) - step - head) if rolled.loss else set()
    return step, head, loss


def _param_made(rolled, args, nid):
    """Whether `nid` is a parameter or computed from parameters (and constants) alone."""
    under = toposort([nid], args.__getitem__)
    return any(rolled.nodes[n].role == "parameter" for n in under)


def _params_under(rolled, args, nid):
    return [n for n in toposort([nid], args.__getitem__) if rolled.nodes[n].role == "parameter"]
