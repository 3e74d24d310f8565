"""What to draw, as plain data: a `Scene` of nodes, edges and clusters.

This module decides *which* nodes, edges and clusters a picture has, their
label text (plain, unescaped) and their style keys; `viz.draw` turns a Scene
into Graphviz.  Nothing here knows DOT syntax, so scenes can be tested and
reused without Graphviz.

Scene node ids come from the graph's own ids (``n3``, ``t4.n13``) or are fixed
names with a ``viz.`` prefix, never `id()`, so the same model gives the same
scene and the same DOT text.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from minigrad.walk import toposort

from .labels import number, scalar, shape_text


@dataclass
class Item:
    """One drawn node."""
    id: str
    kind: str                    # a role ("parameter", "state", ...) or "block", "opnode", "delay", "elision", "legend", "colorbar"
    rows: tuple = ()             # label lines, plain text; the first is the title
    cluster: str | None = None   # id of the Cluster it sits in
    fill: str | None = None      # overrides the style's fill (gradient colours)
    data: dict = field(default_factory=dict)  # kind-specific: legend entries, colour-bar ticks, xlabel


@dataclass
class Link:
    src: str
    dst: str
    kind: str = "data"           # a key of STYLE["edges"]
    label: str | None = None


@dataclass
class Cluster:
    id: str
    title: str


@dataclass
class Scene:
    title: str
    rankdir: str = "LR"
    items: list = field(default_factory=list)
    links: list = field(default_factory=list)
    clusters: list = field(default_factory=list)
    same_rank: list = field(default_factory=list)   # groups of item ids kept in one column (LR) / row (TB)
    chain: list = field(default_factory=list)       # item ids drawn as one straight line (the recurrence)

    def item(self, id):
        return next(i for i in self.items if i.id == id)


def op_text(node):
    """An op's name with its short attributes, e.g. ``sum(axis=0)``."""
    if not node.attrs:
        return node.op
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(node.attrs.items()))
    return f"{node.op}({args})" if len(args) <= 24 else node.op


def legend(scene, engine=False):
    """Append a legend item listing the roles the scene uses (engine: plain engine-graph wording)."""
    used = {i.kind for i in scene.items} | {"op" for i in scene.items if i.kind in ("opnode", "block")}
    marks = [m for m, present in (("delay", "delay" in used),
                                  ("detached", any(l.kind == "detached" for l in scene.links))) if present]
    scene.items.append(Item("viz.legend", "legend", ("legend",), data={"roles": sorted(used), "marks": marks,
                                                                        "engine": engine}))


# --- an engine expression -------------------------------------------------

def expression_scene(graph):
    """Every recorded value, plus one small node per op, like micrograd's draw_dot."""
    scene = Scene("", rankdir="LR")
    tensors = getattr(graph, "tensors", None) or {}
    for nid, node in graph.nodes.items():
        t = tensors.get(nid)
        data = t.data if t is not None else node.value
        grad = getattr(t, "grad", None)
        rows = [node.name or shape_text(node.shape)]
        if node.name:
            rows.append(shape_text(node.shape))
        if scalar(data) is not None:
            rows.append(f"data {scalar(data)}")
        if scalar(grad) is not None:
            rows.append(f"grad {scalar(grad)}")
        elif grad is not None:
            rows.append(f"‖grad‖ {number((grad ** 2).sum() ** 0.5)}")
        kind = node.role if node.role != "op" else "op"
        scene.items.append(Item(nid, kind, tuple(rows)))
        if node.op != "leaf":
            scene.items.append(Item(f"{nid}.op", "opnode", (op_text(node),)))
            scene.links.append(Link(f"{nid}.op", nid))
    pos = {nid: i for i, nid in enumerate(graph.nodes)}
    for e in sorted(graph.edges, key=lambda e: (pos[e.dst], e.slot)):
        scene.links.append(Link(e.src, f"{e.dst}.op"))
    legend(scene, engine=True)
    return scene


# --- the rolled graph -----------------------------------------------------

def _state_label(name, when):
    return f"{name}({when})"


def _ancestors(arguments, roots):
    return set(toposort(roots, arguments.__getitem__))


def parts(rolled):
    """The rolled graph's nodes in three parts: the step (what the states need), the output head
    (what o(t) needs besides) and the loss (what L(t) needs besides)."""
    arguments = rolled.arguments()
    step = _ancestors(arguments, [lp.output for lp in rolled.loops])
    head = _ancestors(arguments, [rolled.output]) - step
    loss = (_ancestors(arguments, [rolled.loss]) - step - head) if rolled.loss else set()
    return step, head, loss


def _emits(rolled):
    """Whether o(t) is a node of its own (an output head), not one of the states."""
    return rolled.output not in {lp.output for lp in rolled.loops}


def _head_items(scene, rolled, when, cluster, ids, head_params, loss_params, chain_src):
    """o(t), and y(t) -> L(t) when there is a loss, for block pictures: `ids` maps rolled ids to the
    drawn ones; `chain_src` is the drawn state o(t) is computed from."""
    if _emits(rolled):
        o = rolled.nodes[rolled.output]
        scene.items.append(Item(ids(rolled.output), "output", (f"o({when})", shape_text(o.shape)), cluster))
        scene.links.append(Link(chain_src, ids(rolled.output), "data"))
        scene.links.extend(Link(p, ids(rolled.output), "param") for p in head_params)
    if rolled.target is not None and ids(rolled.target) is not None:
        y = rolled.nodes[rolled.target]
        scene.items.append(Item(ids(rolled.target), "target", (f"y({when})", shape_text(y.shape)), cluster))
    if rolled.loss is not None and ids(rolled.loss) is not None:
        scene.items.append(Item(ids(rolled.loss), "loss", (f"L({when})", "scalar"), cluster))
        scene.links.append(Link(ids(rolled.output), ids(rolled.loss), "data"))
        scene.links.append(Link(ids(rolled.target), ids(rolled.loss), "target"))
        scene.links.extend(Link(p, ids(rolled.loss), "param") for p in loss_params)


def _params_by_part(rolled):
    step, head, loss = parts(rolled)
    params = [n for n in rolled.nodes.values() if n.role == "parameter"]
    arguments = rolled.arguments()
    users = {p.id: {part for part, nodes in (("step", step), ("head", head), ("loss", loss))
                    for nid in nodes if p.id in arguments[nid]} for p in params}
    return params, {part: [p.id for p in params if part in users[p.id]] for part in ("step", "head", "loss")}


_FEED_WORDS = {"output": "o(t−1)", "argmax": "one-hot argmax o(t−1)", "sample": "one-hot sample of o(t−1)",
               "teacher": "y(t−1), teacher-forced"}


def _delay_label(lp, when="t"):
    back = f"{when}−{lp.delay}" if when != "t" or lp.delay != 1 else "t−1"
    return _state_label(lp.name, back)


def _readers(rolled, scene, block, when="t"):
    """Items for what the step reads besides x and its state — the context (once, shared), the step
    index — linked into `block`."""
    for i, cid in enumerate(rolled.context):
        node = rolled.nodes[cid]
        scene.items.append(Item(cid, "context", (node.label if len(rolled.context) > 1 else "context",
                                                 shape_text(node.shape), "read by every step")))
        scene.links.append(Link(cid, block, "context"))


def rolled_scene(rolled, detail):
    """The cycle of Goodfellow et al. Figs. 10.2 (left), 10.3 and 10.4: each state the step reads feeds
    back through a delay square (labelled with its delay when it is more than one step); o(t), y(t)
    and L(t) follow the state when the network has them; y(t−1), when the step reads it, comes back
    from o(t) (free-running) or y(t) (teacher-forced) through its own delay."""
    cell = rolled.cell
    read = rolled.read_loops()
    longest = max([lp.delay for lp in read] + [1])
    how = "a one-step delay" if longest == 1 else "delays"
    scene = Scene(f"{cell}, rolled: {'the state feeds back through ' + how if read else 'the output feeds back'}",
                  rankdir="LR")
    params, by_part = _params_by_part(rolled)
    for p in params:
        scene.items.append(Item(p.id, "parameter", (p.label, shape_text(p.shape))))
    x = rolled.nodes[rolled.x] if rolled.x is not None else None
    if detail == "block":
        block = "viz.cell"
        scene.items.append(Item(block, "block", (cell, "one step")))
        if x is not None:
            scene.items.append(Item(x.id, "input", ("x(t)", shape_text(x.shape))))
            scene.links.append(Link(x.id, block))
        if rolled.step_index is not None:
            scene.items.append(Item(rolled.step_index, "step", ("t", "step index")))
            scene.links.append(Link(rolled.step_index, block))
        _readers(rolled, scene, block)
        scene.links.extend(Link(p, block, "param") for p in by_part["step"])
        for lp in rolled.loops:
            out = rolled.nodes[lp.output]
            scene.items.append(Item(lp.output, "state", (_state_label(lp.name, "t"), shape_text(out.shape))))
            scene.links.append(Link(block, lp.output, "state"))
            if lp in read:
                _delay(scene, lp.output, block, _delay_label(lp), "feedback", lp.delay)
        _head_items(scene, rolled, "t", None, lambda nid: nid, by_part["head"], by_part["loss"],
                    rolled.loops[0].output)
        fb = rolled.feedback
        if fb is not None:
            src = rolled.target if fb.feed == "teacher" else rolled.output
            _delay(scene, src, block, _FEED_WORDS[fb.feed], "feedback")
        scene.same_rank.append([p.id for p in params] + ([x.id] if x is not None else []))
    else:
        step = Cluster("viz.step", f"one step of {cell}")
        scene.clusters.append(step)
        state_in = {lp.input: lp for lp in rolled.loops}
        state_out = {lp.output: lp.name for lp in rolled.loops}
        for nid, node in rolled.nodes.items():
            if node.role == "parameter":
                continue
            if nid in state_in:
                if state_in[nid] not in read:
                    continue
                item = Item(nid, "state", (_delay_label(state_in[nid]), shape_text(node.shape)), step.id)
            elif nid in state_out:
                item = Item(nid, "state", (_state_label(state_out[nid], "t"), shape_text(node.shape)), step.id)
            elif x is not None and nid == x.id:
                item = Item(nid, "input", ("x(t)", shape_text(node.shape)), step.id)
            else:
                item = _op_item(node, step.id, _network_name(rolled, nid, "t"))
            scene.items.append(item)
        for e in rolled.edges:
            kind = {"parameter": "param", "context": "context"}.get(rolled.nodes[e.src].role, "data")
            scene.links.append(Link(e.src, e.dst, kind))
        for lp in read:
            _delay(scene, lp.output, lp.input, None, "feedback_back", lp.delay)
        fb = rolled.feedback
        if fb is not None:
            src = rolled.target if fb.feed == "teacher" else rolled.output
            _delay(scene, src, fb.input, None, "feedback_back")
    legend(scene)
    return scene


def _network_name(rolled, nid, when):
    """The textbook's name of o(t), y(t) and L(t) nodes, else None."""
    return {rolled.output: f"o({when})", rolled.target: f"y({when})", rolled.loss: f"L({when})"}.get(nid)


def _delay(scene, src, dst, label, back_kind, steps=1):
    """The textbook's delay: a black square on the feedback edge from `src` back to `dst`."""
    square = f"viz.delay.{src}"
    scene.items.append(Item(square, "delay", (), data={"xlabel": f"{steps}-step delay"}))
    scene.links.append(Link(src, square, "feedback"))
    scene.links.append(Link(square, dst, back_kind, label))


def _op_item(node, cluster, name=None):
    """An op (or constant) node; `name` (o(t), L(t), y(t)) titles it, and its role colours it."""
    if node.role == "constant":
        value = scalar(node.value)
        return Item(node.id, "constant", (value if value is not None else "const", shape_text(node.shape)), cluster)
    if node.role == "target":
        return Item(node.id, "target", (name or "y", shape_text(node.shape)), cluster)
    if node.role in ("context", "step", "feedback"):
        title = {"step": "t", "feedback": "y(t−1)"}.get(node.role, node.label)
        return Item(node.id, node.role, (name or title, shape_text(node.shape)), cluster)
    kind = node.role if node.role in ("output", "loss") else "op"
    rows = (name, op_text(node), shape_text(node.shape)) if name else (op_text(node), shape_text(node.shape))
    return Item(node.id, kind, rows, cluster)


# --- the unrolled graph ---------------------------------------------------

def shown_steps(T, collapse):
    """The steps drawn: all, or the first and last `collapse` with the rest elided."""
    if collapse is None or 2 * collapse >= T:
        return list(range(T)), None
    return list(range(collapse)) + list(range(T - collapse, T)), (collapse, T - collapse)


def unrolled_scene(graph, detail, collapse=None, norms=None, scale=None, loss=None):
    """One cluster per step, left to right, parameters drawn once (Goodfellow et al. Figs. 10.2 right, 10.3).

    norms: {state node id: ‖∂L/∂state‖} to colour the chain by `scale`.
    loss: (title rows, ids of drawn-or-elided state outputs the loss depends on), or None: a loss the
        user computed from the outputs outside the network.
    """
    rolled = graph.rolled
    T, names, cell = graph.T, graph.state_names, graph.cell
    steps, gap = shown_steps(T, collapse)
    shown = set(steps)
    norms = norms or {}
    title = f"{cell} unrolled over T = {T} step{'s' if T != 1 else ''}"
    if gap:
        title += f" (first {collapse} and last {collapse} shown)"
    # A truncated-BPTT window counts its steps from where it starts in the whole sequence.
    start = int((graph.window or {}).get("start", 0))
    if start:
        title += f", steps {start + 1} to {start + T} of the sequence"
    scene = Scene(title, rankdir="LR")

    state0, state_out = graph.state0, graph.state_out
    out_step = {nid: t for t, ids in enumerate(state_out) for nid in ids}
    out_name = {nid: names[i] for ids in state_out for i, nid in enumerate(ids)}
    detached = graph.detached_state0
    elide = "viz.elided"

    def state_item(nid, name, when, cluster, shape):
        rows = [_state_label(name, when), shape_text(shape)]
        norm, fill = norms.get(nid, "absent"), None
        if norm != "absent" and scale is not None:
            fill = scale.color(norm)
            rows.append(f"‖∂L/∂{name}‖ " + ("none" if norm is None else number(norm)))
        return Item(nid, "state", tuple(rows), cluster, fill)

    params, by_part = _params_by_part(rolled)
    read = rolled.read_loops()
    read_names = {lp.name for lp in read}
    for i, nid in enumerate(state0):
        if names[i] in read_names:
            scene.items.append(state_item(nid, names[i], str(start), None, graph.nodes[nid].shape))
    if read:
        scene.chain.append(state0[names.index(read[0].name)])
    for p in params:
        scene.items.append(Item(p.id, "parameter", (p.label, shape_text(p.shape), "shared by all steps")))
    for cid in graph.context:
        node = graph.nodes[cid]
        scene.items.append(Item(cid, "context", (node.label if len(graph.context) > 1 else "context",
                                                 shape_text(node.shape), "read by every step")))
    fb = rolled.feedback
    if fb is not None:
        y0 = graph.feedback0
        scene.items.append(Item(y0, "feedback", (f"y({start})", shape_text(graph.nodes[y0].shape), "fed to step 1")))
    # One column holds the initial state and the parameters, the sources of every step, so the
    # parameters sit next to the chain instead of wherever crossing-minimisation would strand them.
    scene.same_rank.append([nid for i, nid in enumerate(state0) if names[i] in read_names]
                           + [p.id for p in params] + list(graph.context) + ([graph.feedback0] if fb else []))

    # Group the graph once, so a long sequence costs one pass however few steps are drawn.
    by_step = defaultdict(list)
    for nid, node in graph.nodes.items():
        t = graph.step_of.get(nid)
        if t in shown:
            by_step[t].append(node)

    fed_within = set()
    if detail != "block":
        fed_within = {e.dst for e in graph.edges if graph.step_of.get(e.dst) in shown
                      and e.src not in state0 and graph.step_of.get(e.src) == graph.step_of[e.dst]}

    def source(nid):
        """Where an edge from state node `nid` starts in the picture: itself, or the elision."""
        t = out_step.get(nid)
        return elide if (t is not None and t not in shown) else nid

    def state_link(src, dst):
        kind = "detached" if (detached and src in state0) else "state"
        return Link(source(src), dst, kind, "detached" if kind == "detached" else None)

    for t in steps:
        if gap and t == gap[1]:
            scene.items.append(_elision_item(elide, gap, state_out, norms, scale, start))
            scene.chain.append(elide)
            for nid in state_out[gap[0] - 1]:
                scene.links.append(Link(nid, elide, "state"))
        when = str(start + t + 1)
        cl = Cluster(f"t{t}", f"step {when}")
        scene.clusters.append(cl)
        xid = graph.steps[t].get(rolled.x)
        if xid is not None:
            scene.items.append(Item(xid, "input", (f"x({when})", shape_text(graph.nodes[xid].shape)), cl.id))
        incoming = [graph.steps[t][lp.input] for lp in read]
        if detail == "block":
            # x(t) sits under its block in the same column and the new states fill the next column,
            # so every step is two columns wide and the steps line up in one row.
            block = f"viz.block.t{t}"
            scene.items.append(Item(block, "block", (cell, f"step {when}"), cl.id))
            scene.chain.append(block)
            if xid is not None:
                scene.links.append(Link(xid, block, "input"))
            if rolled.step_index is not None:
                sid = graph.step_ids[t]
                scene.items.append(Item(sid, "step", (f"t = {start + t}",), cl.id))
                scene.links.append(Link(sid, block, "input"))
            scene.links.extend(Link(cid, block, "context") for cid in graph.context)
            if fb is not None:
                scene.links.append(_fed_link(graph, t, block, source, elide, shown))
            if not read and t:  # no state carried: keep the steps in one row all the same
                scene.links.append(Link(source(state_out[t - 1][0]), block, "order"))
            # o(t) and L(t) stack under the new states and y(t) under x(t): a step stays two columns wide.
            head = [i for i in (rolled.output, rolled.loss) if _emits(rolled) or i != rolled.output]
            drawn = graph.steps[t]
            scene.same_rank.append([block] + ([xid] if xid is not None else [])
                                   + ([drawn[rolled.target]] if rolled.target in drawn else []))
            scene.same_rank.append(list(state_out[t]) + [drawn[i] for i in head if i is not None and i in drawn])
            scene.links.extend(state_link(nid, block) for nid in incoming)
            scene.links.extend(Link(p, block, "param") for p in by_part["step"])
            for i, nid in enumerate(state_out[t]):
                scene.items.append(state_item(nid, names[i], when, cl.id, graph.nodes[nid].shape))
                scene.links.append(Link(block, nid, "state"))
            _head_items(scene, rolled, when, cl.id, graph.steps[t].get, by_part["head"], by_part["loss"],
                        state_out[t][0])
        else:
            # Every op of step t that nothing else in the step feeds (x(t), a parameter's transpose) is
            # ranked after the incoming state; otherwise it floats left and the steps overlap in a staircase.
            roots = [n.id for n in by_step[t] if n.id not in fed_within and n.id not in state0]
            anchor = incoming[0] if incoming else (state_out[t - 1][0] if t else None)
            if anchor is not None:
                scene.links.extend(Link(source(anchor), nid, "order") for nid in roots)
            for node in by_step[t]:
                if node.id == xid:
                    continue
                if node.id in out_name:
                    scene.items.append(state_item(node.id, out_name[node.id], when, cl.id, node.shape))
                elif node.id in state0:
                    continue
                else:
                    scene.items.append(_op_item(node, cl.id, _network_name(rolled, graph.template_of[node.id], when)))
    scene.chain.extend(ids[0] for t, ids in enumerate(state_out) if t in shown)
    if detail != "block":
        scene.links.extend(_ops_links(graph, shown, state0, out_step, source, state_link))
    if graph.loss_steps:
        _total_loss(scene, graph, shown, elide)

    if loss is not None:
        rows, feeding = loss
        scene.items.append(Item("viz.loss", "output", rows))
        sources = []
        for nid in feeding:
            s = source(nid)
            if s not in sources:
                sources.append(s)
        scene.links.extend(Link(s, "viz.loss", "loss") for s in sources)
    if scale is not None and not scale.empty:
        scene.items.append(Item("viz.colorbar", "colorbar", ("‖∂L/∂state‖, log scale",),
                                data={"ticks": scale.ticks()}))
    legend(scene)
    return scene


_FED = {"argmax": "argmax, one-hot", "sample": "sampled, one-hot"}


def _fed_link(graph, t, block, source, elide, shown):
    """What step t reads as y(t−1), drawn as an edge into its block: y0, o(t−1) or y(t−1)."""
    fb = graph.rolled.feedback
    if t == 0:
        return Link(graph.feedback0, block, "fed")
    prev = graph.steps[t - 1]
    src = prev[graph.rolled.target] if fb.feed == "teacher" else prev[graph.rolled.output]
    src = src if t - 1 in shown else elide
    return Link(source(src), block, "fed", _FED.get(fb.feed, "one-hot" if fb.feed == "teacher"
                                                     and graph.nodes[graph.fed[t]].op == "onehot" else None))


def _total_loss(scene, graph, shown, elide):
    """The network's loss L, fed by every drawn L(t) (and by the elision for those it hides)."""
    how = "Σ" if graph.reduction == "sum" else "mean"
    rows = [f"L = {how} L(t)" if len(graph.loss_steps) > 1 else f"L = L({graph.loss_steps[0] + 1})"]
    if graph.loss_value is not None:
        rows.append(f"= {number(graph.loss_value)}")
    scene.items.append(Item("viz.total", "loss", tuple(rows)))
    hidden = False
    for t, lid in graph.losses.items():
        if t in shown:
            scene.links.append(Link(lid, "viz.total", "loss"))
        else:
            hidden = True
    if hidden:
        scene.links.append(Link(elide, "viz.total", "loss"))


def _ops_links(graph, shown, state0, out_step, source, state_link):
    """Edges among the drawn steps' ops; an edge from an elided step starts at the elision node."""
    node_t = graph.step_of
    seen, links = set(), []
    for e in graph.edges:
        if node_t.get(e.dst) not in shown:
            continue
        src_node = graph.nodes[e.src]
        if src_node.role in ("parameter", "context"):
            link = Link(e.src, e.dst, "param" if src_node.role == "parameter" else "context")
        elif e.src in state0 or (e.src in out_step and out_step[e.src] != node_t[e.dst]):
            link = state_link(e.src, e.dst)
        elif node_t.get(e.src) in shown:
            link = Link(e.src, e.dst)
        else:
            continue
        key = (link.src, link.dst)
        if key not in seen:
            seen.add(key)
            links.append(link)
    return links


def _elision_item(elide, gap, state_out, norms, scale, start):
    k, end = gap
    rows = [f"… {end - k} steps …", f"steps {start + k + 1} to {start + end}"]
    if scale is not None:
        hidden = [norms.get(nid) for t in range(k, end) for nid in state_out[t]]
        vals = [n for n in hidden if n is not None]
        if vals:
            rows.append(f"‖∂L/∂state‖ {number(min(vals))} to {number(max(vals))}")
    return Item(elide, "elision", tuple(rows))
