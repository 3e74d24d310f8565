"""Unfolding: the rolled graph's cycle turned into a DAG of T steps (Goodfellow et al., Fig. 10.2, right).

`unfold(rolled, T, loss_steps=None)` copies every per-step node T times, cuts
each delay and joins the state made at step t to the consumers of the state
read at step t + delay (the first `delay` steps read the initial state; a negative
delay carries a state backward in time, from the last step to the first).
Parameters and the context are not copied: one node each feeds every step,
which is why BPTT sums each parameter's gradient over time.  The target y(t)
and the ops only the loss needs are copied at the loss steps alone (every step
by default; many-to-one, Fig. 10.5, is ``loss_steps=[T-1]``).  A step that
reads y(t−1) is fed, from step 1 on, o(t−1) itself, a one-hot choice made from
it (a node of its own: "argmax_onehot", "sample_onehot") or, teacher-forced,
the target y(t−1) (one-hot for class indices); at step 0 an initial value y0.
"""
from __future__ import annotations

from dataclasses import replace

from minigrad.graph import Edge, Graph, Node
from minigrad.walk import toposort


class UnfoldedGraph(Graph):
    """T copies of a rolled graph's step, as one DAG.

    Node ids: a parameter keeps its rolled id; the copy of rolled node n at step
    t is "t{t}.n" (`node_at(n, t)`; `step_of[id]`, `template_of[id]` go back).
    Per step, in lists of length T:

        x            id of x(t) (None without inputs)
        outputs      id of o(t)
        state_out    [id of each state made at step t]
        step_ids     id of the step index t, when the step reads it
        fed          id of what step t reads as y(t−1), when it does
    and
        state0       [id of each initial state]   (the states step 0 reads)
        feedback0    id of y0, the y(t−1) of step 0, or None
        loss_steps   the steps with a loss, ascending
        losses       {t: id of L(t)} and targets {t: id of y(t)} at those steps (every step, teacher-forced)
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
        return [step.get(self.rolled.x) for step in self.steps]

    @property
    def context(self):
        return list(self.rolled.context)

    @property
    def step_ids(self):
        return [step[self.rolled.step_index] for step in self.steps] if self.rolled.step_index else []

    @property
    def fed(self):
        fb = self.rolled.feedback
        return [step[fb.input] for step in self.steps] if fb else []

    @property
    def feedback0(self):
        fb = self.rolled.feedback
        return self.steps[0][fb.input] if fb else None

    @property
    def outputs(self):
        return [step[self.rolled.output] for step in self.steps]

    @property
    def state0(self):
        return [self.steps[_reads_initial(lp, self.T)][lp.input] for lp in self.rolled.loops]

    @property
    def final(self):
        """The last state each loop makes: at the last step, or at step 0 for a backward chain."""
        return [self.steps[self.T - 1 if lp.delay > 0 else 0][lp.output] for lp in self.rolled.loops]

    @property
    def state_out(self):
        return [[step[lp.output] for lp in self.rolled.loops] for step in self.steps]

    @property
    def losses(self):
        return {t: self.steps[t][self.rolled.loss] for t in self.loss_steps}

    @property
    def targets(self):
        return {t: step[self.rolled.target] for t, step in enumerate(self.steps) if self.rolled.target in step}


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
    shared = set(rolled.params) | set(rolled.context)
    feeds = {lp.input: lp for lp in rolled.loops}
    fb = rolled.feedback
    teacher = fb is not None and fb.feed == "teacher"
    if teacher and rolled.target is None:
        raise ValueError("unfold: teacher forcing feeds the targets y(t−1): the rolled graph needs its targets "
                         "(trace it with targets)")
    loss_only = _loss_only(rolled, arguments) - ({rolled.target} if teacher else set())
    with_loss = set(loss_steps)

    graph = UnfoldedGraph(rolled, T, loss_steps)
    nodes, edges = [rolled.nodes[p] for p in order if p in shared], []

    def add(node, t, template, args=()):
        nodes.append(node)
        edges.extend(Edge(src, node.id, slot) for slot, src in enumerate(args))
        graph.step_of[node.id], graph.template_of[node.id] = t, template
        return node.id

    for t in range(T):
        local = {p: p for p in shared}
        for nid in order:
            if nid in shared or (nid in loss_only and t not in with_loss):
                continue
            lp = feeds.get(nid)
            if lp is not None:  # the delay, cut: the state step t - delay made (a later step's, for a negative delay)
                if 0 <= t - lp.delay < T:
                    local[nid] = f"t{t - lp.delay}.{lp.output}"  # made at its own step (ids are fixed in advance)
                    continue
                first = _reads_initial(lp, T)
                if t != first:  # the steps before the first state arrives all read the one initial state
                    local[nid] = f"t{first}.{nid}"
                    continue
            if fb is not None and nid == fb.input and t > 0:
                local[nid] = _fed(rolled, graph, t, add)
                continue
            local[nid] = add(replace(rolled.nodes[nid], id=f"t{t}.{nid}"), t, nid, [local[a] for a in arguments[nid]])
        graph.steps.append(local)
    graph.nodes = {n.id: n for n in nodes}
    graph.edges = edges
    for p in shared:
        graph.template_of[p] = p
    return graph


def _reads_initial(lp, T):
    """The step whose copy of the loop's input is the initial state: 0 for a state carried forward,
    the last step for one carried backward (a negative delay: the backward chain of a
    bidirectional net starts at the end)."""
    return 0 if lp.delay > 0 else max(0, T + lp.delay)


_CHOICE = {"argmax": "argmax_onehot", "sample": "sample_onehot"}


def choice_seed(seed, t):
    """The seed of the class feed="sample" draws from o(t−1) for step t: one stream per step."""
    return seed * 1_000_003 + t


def _fed(rolled, graph, t, add):
    """The node step t reads as y(t−1): o(t−1), a one-hot choice made from it, or the target y(t−1)."""
    fb, prev = rolled.feedback, graph.steps[t - 1]
    template = rolled.nodes[fb.input]
    if fb.feed == "output":
        return prev[rolled.output]
    if fb.feed in _CHOICE:
        attrs = {"seed": choice_seed(fb.seed, t)} if fb.feed == "sample" else {}
        node = Node(f"t{t}.{fb.input}", _CHOICE[fb.feed], "op", template.shape, template.dtype, f"y({t})", attrs)
        return add(node, t, fb.input, [prev[rolled.output]])
    y = prev[rolled.target]
    if rolled.nodes[rolled.target].dtype.startswith(("int", "uint")):  # class indices: fed one-hot
        attrs = {"depth": template.shape[-1], "dtype": template.dtype}
        return add(Node(f"t{t}.{fb.input}", "onehot", "op", template.shape, template.dtype, f"y({t})", attrs),
                   t, fb.input, [y])
    return y


def _loss_only(rolled, arguments):
    """Rolled node ids that only the loss needs (its target and ops between o(t) and L(t))."""
    if rolled.loss is None:
        return set()
    keep = toposort([lp.output for lp in rolled.loops] + [rolled.output], arguments.__getitem__)
    return set(rolled.nodes) - set(keep)
