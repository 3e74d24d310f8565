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
    blocks        the step cut into the parts a block picture draws as boxes: states that feed one
                  another within a step or across it (an LSTM's h and c) make one block; a deep net
                  gives a block per layer, a bidirectional one a block per direction
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

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

        self.blocks = _blocks(rolled, args, self.sources, deps)
        heads = set().union(*(deps[a] for a in args[rolled.output])) if rolled.output in args else set()
        self.head_reads = [lp.output for lp in rolled.loops if lp.output in heads]

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

    def edge_label(self, source, block=None):
        """The symbols to write on the edge out of `source` (a rolled id), or None; with a `block`, only
        those of the parameters that block uses."""
        syms = self.on_edge.get(source) or []
        if block is not None:
            mine = {self.symbols[p] for p in block.params}
            syms = [s for s in syms if s in mine]
        return ", ".join(syms) if syms else None

    def block_of(self, loop):
        return next(b for b in self.blocks if loop in b.loops)

    def param_table(self):
        """(symbol, name, shape) per parameter: by layer (U1, W1, b1, U2...), a backward chain's (U←)
        after the forward one's, then symbol and name; names without a symbol last."""
        rows = [(self.symbols[pid], name, self.rolled.nodes[pid].shape) for pid, name in self.rolled.params.items()]
        layer = lambda sym: int(re.search(r"\d*$", sym).group() or 0)  # noqa: E731
        return sorted(rows, key=lambda r: (r[0] == r[1], layer(r[0]), "←" in r[0], r[0], r[1]))

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


@dataclass(eq=False)
class Block:
    """States made together, and what making them takes: the ops, the parameters, what they read
    (x(t), the context, states read at t − d, other blocks' states made at t)."""
    loops: list
    ops: set = field(default_factory=set)
    params: set = field(default_factory=set)
    reads: list = field(default_factory=list)
    layer: int = 1
    backward: bool = False
    title: str = "one step"     # in the rolled picture
    tag: str = ""               # after "step t" in the unrolled one


def _blocks(rolled, args, sources, deps):
    loops = rolled.loops
    reads = {lp.output: set().union(*(deps[a] for a in args[lp.output])) for lp in loops}
    group = {lp.name: i for i, lp in enumerate(loops)}

    def join(a, b):
        old, new = group[a.name], group[b.name]
        for name, g in group.items():
            if g == old:
                group[name] = new
    for lp in loops:
        for other in loops:
            if other is not lp and (other.input in reads[lp.output] or other.output in reads[lp.output]
                                    and lp.input in reads[other.output]):
                join(lp, other)
    blocks = []
    position = {nid: i for i, nid in enumerate(rolled.nodes)}
    for g in dict.fromkeys(group[lp.name] for lp in loops):
        mine = [lp for lp in loops if group[lp.name] == g]
        outs = {lp.output for lp in mine}
        ops = set(toposort(list(outs), lambda n: args[n] if n in outs or n not in sources else ()))
        b = Block(mine, {n for n in ops if n in outs or n not in sources})
        b.params = {n for n in b.ops if n in rolled.params}
        # in the rolled graph's order: a set's order changes from one process to the next (string
        # hashing), and the drawing must not — the edges are emitted in this order
        b.reads = sorted({s for lp in mine for s in reads[lp.output]} - outs,
                         key=lambda n: (position.get(n, -1), str(n)))
        b.backward = all(lp.delay < 0 for lp in mine)
        blocks.append(b)
    made_by = {lp.output: b for b in blocks for lp in b.loops}
    for b in _ordered(blocks, made_by):
        b.layer = 1 + max([made_by[r].layer for r in b.reads if r in made_by] + [0])
    layers = max(b.layer for b in blocks) if blocks else 1
    two_way = any(b.backward for b in blocks) and not all(b.backward for b in blocks)
    for b in blocks:
        way = ("backward" if b.backward else "forward") if two_way else ""
        if layers > 1:
            b.title = f"layer {b.layer}" + (f", {way}" if way else "")
        elif way:
            b.title = f"{way} chain"
        b.tag = ", ".join(w for w in (f"layer {b.layer}" if layers > 1 else "", ("←" if b.backward else "→")
                                      if two_way else "") if w)
    return blocks


def _ordered(blocks, made_by):
    """Blocks, each after those whose states made at t it reads."""
    return toposort(blocks, lambda b: [made_by[r] for r in b.reads if r in made_by])
