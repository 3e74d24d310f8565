"""Unfolding: the rolled graph's cycle turned into a DAG of T steps (Goodfellow et al., Fig. 10.2, right).

`unfold(rolled, T, loss_steps=None)` copies every per-step node T times, cuts
each delay and joins the state made at step t to the consumers of the state
read at step t + delay.  Parameters are not copied: one node per parameter
feeds every step, which is why BPTT sums each parameter's gradient over time.
The target y(t) and the ops only the loss needs are copied at the loss steps
alone (every step by default; many-to-one, Fig. 10.5, is ``loss_steps=[T-1]``).
"""
from __future__ import annotations

from dataclasses import replace

from minigrad.graph import Edge, Graph


class UnfoldedGraph(Graph):
    """T copies of a rolled graph's step, as one DAG.

    Node ids: a parameter keeps its rolled id; the copy of rolled node n at step
    t is "t{t}.n" (`node_at(n, t)`; `step_of[id]`, `template_of[id]` go back).
    Per step, in lists of length T:

        x            id of x(t)
        outputs      id of o(t)
        state_out    [id of each state made at step t]
    and
        state0       [id of each initial state]   (the states step 0 reads)
        loss_steps   the steps with a loss, ascending
        losses       {t: id of L(t)} and targets {t: id of y(t)} at those steps
    """

    def __init__(self, rolled, T, loss_steps=()):
        super().__init__()
        self.rolled, self.T = rolled, T
        self.loss_steps = list(loss_steps)
        self.step_of, self.template_of = {}, {}
        self.steps = []                       # per step: {rolled id: unfolded id}
        self.reduction = "sum"                # how the L(t) add up to L: "sum" or "mean"
        self.loss_value = None                # L, once a run computed it
        self.detached_state0 = False          # set by truncated BPTT for a window that starts mid-sequence
        self.window = None                    # truncated BPTT: which window of which sequence

    def __repr__(self):
        return f"UnfoldedGraph({self.rolled.cell}, T={self.T}, {len(self.nodes)} nodes)"

    def node_at(self, template, t):
        return self.steps[t][template]

    @property
    def cell(self):
        return self.rolled.cell

    @property
    def state_names(self):
        return self.rolled.state_names

    @property
    def params(self):
        return self.rolled.params

    @property
    def x(self):
        return [step[self.rolled.x] for step in self.steps]

    @property
    def outputs(self):
        return [step[self.rolled.output] for step in self.steps]

    @property
    def state0(self):
        return [self.steps[0][lp.input] for lp in self.rolled.loops]

    @property
    def state_out(self):
        return [[step[lp.output] for lp in self.rolled.loops] for step in self.steps]

    @property
    def losses(self):
        return {t: self.steps[t][self.rolled.loss] for t in self.loss_steps}

    @property
    def targets(self):
        return {t: self.steps[t][self.rolled.target] for t in self.loss_steps}


def unfold(rolled, T, loss_steps=None):
    """A DAG of T copies of `rolled`'s step; see UnfoldedGraph.

    loss_steps: the steps (0-based, ascending) at which the loss is taken when
    the rolled graph has one; every step by default.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"unfold: T must be a positive integer number of steps, got {T!r}")
    if rolled.loss is None:
        loss_steps = []
    loss_steps = list(range(T)) if loss_steps is None else list(loss_steps)
    order, arguments = rolled.topological_order(), rolled.arguments()
    shared = set(rolled.params)
    feeds = {lp.input: lp for lp in rolled.loops}
    loss_only = _loss_only(rolled, arguments)
    with_loss = set(loss_steps)

    graph = UnfoldedGraph(rolled, T, loss_steps)
    nodes, edges = [rolled.nodes[p] for p in order if p in shared], []
    for t in range(T):
        local = {p: p for p in shared}
        for nid in order:
            if nid in shared or (nid in loss_only and t not in with_loss):
                continue
            lp = feeds.get(nid)
            if lp is not None and t >= lp.delay:
                local[nid] = graph.steps[t - lp.delay][lp.output]  # the delay, cut: an earlier step's state
                continue
            new_id = f"t{t}.{nid}"
            nodes.append(replace(rolled.nodes[nid], id=new_id))
            edges.extend(Edge(local[src], new_id, slot) for slot, src in enumerate(arguments[nid]))
            local[nid] = new_id
            graph.step_of[new_id], graph.template_of[new_id] = t, nid
        graph.steps.append(local)
    graph.nodes = {n.id: n for n in nodes}
    graph.edges = edges
    for p in shared:
        graph.template_of[p] = p
    return graph


def _loss_only(rolled, arguments):
    """Rolled node ids that only the loss needs (its target and ops between o(t) and L(t))."""
    if rolled.loss is None:
        return set()
    keep, stack = set(), [lp.output for lp in rolled.loops] + [rolled.output]
    while stack:
        nid = stack.pop()
        if nid not in keep:
            keep.add(nid)
            stack.extend(arguments[nid])
    return set(rolled.nodes) - keep
