"""Scenes of recurrent nets: the rolled graph with its delays, and its unfolding over T steps.

As the book draws them (Goodfellow et al. Figs. 10.2–10.6): x(t) → h(t) → o(t) → L(t) ← y(t), the
recurrence through a black delay square, and the weights written on the edges they act on — U on
x → h, W on h → h, V on h → o — with every parameter listed once in a table beside the picture
(``params="labels"``, the default; ``params="nodes"`` draws them as nodes with an edge to every
step).  "block" detail draws a step as one box; "ops" draws every engine op of it, named values
(the gates i, f, g, o) by their names, products with a transposed weight as one op "x·Uᵀ", and
the ops of each `mg.scope` in a box of their own.
"""
from __future__ import annotations

from collections import defaultdict

from .anatomy import Anatomy
from .labels import number, scalar, shape_text
from .scene import Cluster, Item, Link, Scene, legend, op_text

PARAMS = ("labels", "nodes")
_FEED_WORDS = {"output": "o(t−1)", "argmax": "one-hot argmax o(t−1)", "sample": "one-hot sample of o(t−1)",
               "teacher": "y(t−1), teacher-forced"}
_FED = {"argmax": "argmax, one-hot", "sample": "sampled, one-hot"}


def _state_label(name, when):
    return f"{name}({when})"


def _delay_label(lp):
    return _state_label(lp.name, f"t−{lp.delay}" if lp.delay > 0 else f"t+{-lp.delay}")


def _emits(rolled):
    """Whether o(t) is a node of its own (an output head), not one of the states."""
    return rolled.output not in {lp.output for lp in rolled.loops}


def _title(rolled):
    read = rolled.read_loops()
    delays = {lp.delay for lp in read}
    if delays == {1, -1}:
        return f"{rolled.cell}, rolled: a one-step delay forward, a one-step advance backward"
    how = "a one-step delay" if delays <= {1} else "delays"
    return f"{rolled.cell}, rolled: " + (f"the state feeds back through {how}" if read else "the output feeds back")


def _param_items(scene, anatomy, params, shared=False):
    """Parameters as nodes (params="nodes") or as one table beside the picture (labels on edges)."""
    rolled = anatomy.rolled
    if params == "nodes":
        for pid in rolled.params:
            p = rolled.nodes[pid]
            rows = ((p.label, shape_text(p.shape)) + (("shared by all steps",) if shared else ())
                    + (("frozen: not learnt",) if pid in rolled.frozen else ()))
            scene.items.append(Item(pid, "parameter", rows))
    elif rolled.params:
        frozen = {rolled.params[pid] for pid in rolled.frozen}
        rows = [(sym, name + (" (frozen)" if name in frozen else ""), shape_text(shape))
                for sym, name, shape in anatomy.param_table()]
        note = f"rows of U, W, b: gates {rolled.gates}" if rolled.gates else None
        scene.items.append(Item("viz.params", "paramtable", ("parameters, shared by all steps",),
                                data={"rows": rows, "note": note}))


def _param_links(scene, anatomy, params, part, dst, among=None):
    if params == "nodes":
        scene.links.extend(Link(pid, dst, "param") for pid in _by_part(anatomy)[part] if among is None or pid in among)


def _by_part(anatomy):
    rolled, args = anatomy.rolled, anatomy.arguments
    users = {pid: set() for pid in rolled.params}
    for part, nodes in (("step", anatomy.step), ("head", anatomy.head), ("loss", anatomy.loss)):
        for nid in nodes:
            for a in args[nid]:
                if a in users:
                    users[a].add(part)
    return {part: [pid for pid in rolled.params if part in users[pid]] for part in ("step", "head", "loss")}


def _head_items(scene, anatomy, params, when, cluster, ids, rows=False):
    """o(t), and y(t) → L(t) when there is a loss, for block pictures: `ids` maps rolled ids to the
    drawn ones (None where the step has no such node); `rows`: the chains of a bidirectional net are
    drawn as rows, one per direction."""
    rolled = anatomy.rolled
    if _emits(rolled):
        o = rolled.nodes[rolled.output]
        scene.items.append(Item(ids(rolled.output), "output", (f"o({when})", shape_text(o.shape)), cluster))
        for src in anatomy.head_reads:  # a bidirectional net's o(t) reads both chains
            label = anatomy.edge_label(src) if params == "labels" else None
            forward = next(lp for lp in rolled.loops if lp.output == src).delay > 0
            scene.links.append(Link(ids(src), ids(rolled.output), "data_flat" if rows and forward else "data", label))
        _param_links(scene, anatomy, params, "head", ids(rolled.output))
    if rolled.target is not None and ids(rolled.target) is not None:
        y = rolled.nodes[rolled.target]
        scene.items.append(Item(ids(rolled.target), "target", (f"y({when})", shape_text(y.shape)), cluster))
    if rolled.loss is not None and ids(rolled.loss) is not None:
        scene.items.append(Item(ids(rolled.loss), "loss", (f"L({when})", "scalar"), cluster))
        scene.links.append(Link(ids(rolled.output), ids(rolled.loss), "data"))
        scene.links.append(Link(ids(rolled.target), ids(rolled.loss), "target"))
        _param_links(scene, anatomy, params, "loss", ids(rolled.loss))


def _delay(scene, src, into, back_kind, steps=1):
    """The textbook's delay: a black square on the feedback edge from `src` back to each (reader,
    label) of `into` — a reader id alone for an unlabelled edge."""
    square = f"viz.delay.{src}"
    words = f"{steps}-step delay" if steps > 0 else f"{-steps}-step advance"
    scene.items.append(Item(square, "delay", (), data={"xlabel": words}))
    scene.links.append(Link(src, square, "feedback"))
    for dst in into:
        dst, label = dst if isinstance(dst, tuple) else (dst, None)
        scene.links.append(Link(square, dst, back_kind, label))


def _network_name(rolled, nid, when):
    """The textbook's name of o(t), y(t) and L(t) nodes, else None."""
    return {rolled.output: f"o({when})", rolled.target: f"y({when})", rolled.loss: f"L({when})"}.get(nid)


def _op_item(anatomy, node, template, cluster, when, params):
    """An op (or a constant, a target, a context...) of the ops view, titled by its name."""
    rolled = anatomy.rolled
    name = _network_name(rolled, template, when)
    if node.role == "constant":
        value = scalar(node.value)
        return Item(node.id, "constant", (value if value is not None else "const", shape_text(node.shape)), cluster)
    if node.role in ("target", "context", "step", "feedback"):
        title = {"target": name, "step": "t", "feedback": "y(t−1)"}.get(node.role) or node.label
        return Item(node.id, node.role, (title, shape_text(node.shape)), cluster)
    kind = node.role if node.role in ("output", "loss") else "op"
    text = op_text(node)
    if params == "labels":
        if template in anatomy.folded:
            left, pid = anatomy.folded[template]
            text = f"{_short(rolled, left)}·{anatomy.symbols[pid]}ᵀ"
        else:
            syms = anatomy.op_symbols(template)
            text = f"{text} {', '.join(syms)}" if syms else text
    title = name or (node.name if node.name and node.name != node.op else None)
    rows = (title, text, shape_text(node.shape)) if title else (text, shape_text(node.shape))
    return Item(node.id, kind, rows, cluster)


def _short(rolled, nid):
    """How an op's left operand is called in a folded product's label."""
    if nid == rolled.x:
        return "x"
    for lp in rolled.loops:
        if nid in (lp.input, lp.output):
            return lp.name
    node = rolled.nodes[nid]
    return node.name if node.name and node.name != node.op else "·"


def _state_op(node):
    """A state made by an op shows that op: 'tanh', 'add' (the ops view)."""
    return op_text(node) if node.op != "leaf" else None


def _scope_clusters(scene, graph, among, parent, prefix):
    """A box per mg.scope (nested as the scopes were) inside `parent`, for the nodes `among` (all
    when None): {node id: the innermost box's cluster id}."""
    where, made = {}, {c.id for c in scene.clusters}
    for nid, node in graph.nodes.items():
        if node.scope and (among is None or nid in among):
            outer = parent
            for depth in range(1, len(node.scope) + 1):
                cid = f"{prefix}scope.{'.'.join(node.scope[:depth])}"
                if cid not in made:
                    made.add(cid)
                    scene.clusters.append(Cluster(cid, node.scope[depth - 1], outer))
                outer = cid
            where[nid] = outer
    return where


# --- the rolled graph -----------------------------------------------------------------------

def rolled_scene(rolled, detail, params="labels"):
    """The cycle of Goodfellow et al. Figs. 10.2 (left), 10.3 and 10.4: each state the step reads feeds
    back through a delay square (labelled with its delay when it is more than one step); o(t), y(t)
    and L(t) follow the state when the network has them; y(t−1), when the step reads it, comes back
    from o(t) (free-running) or y(t) (teacher-forced) through its own delay."""
    anatomy = Anatomy(rolled)
    labels = params == "labels"
    read = rolled.read_loops()
    scene = Scene(_title(rolled), rankdir="LR")
    _param_items(scene, anatomy, params)
    x = rolled.nodes[rolled.x] if rolled.x is not None else None
    if detail == "block":
        # A box per block (one for a plain cell; per layer, per direction for composites).
        blocks = anatomy.blocks
        box = {b: "viz.cell" if len(blocks) == 1 else f"viz.cell.{k}" for k, b in enumerate(blocks)}
        for b in blocks:
            scene.items.append(Item(box[b], "block", (rolled.cell, b.title)))
        if x is not None:
            scene.items.append(Item(x.id, "input", ("x(t)", shape_text(x.shape))))
        if rolled.step_index is not None:
            scene.items.append(Item(rolled.step_index, "step", ("t", "step index")))
        for cid in rolled.context:
            node = rolled.nodes[cid]
            scene.items.append(Item(cid, "context", (node.label if len(rolled.context) > 1 else "context",
                                                     shape_text(node.shape), "read by every step")))
        made = {lp.output for lp in rolled.loops}
        for b in blocks:
            for r in b.reads:
                label = anatomy.edge_label(r, b) if labels else None
                if r == rolled.step_index:
                    scene.links.append(Link(r, box[b]))
                elif r in rolled.context:
                    scene.links.append(Link(r, box[b], "context", label))
                elif r == rolled.x or r in made:
                    scene.links.append(Link(r, box[b], "data", label))
            _param_links(scene, anatomy, params, "step", box[b], b.params)
        for lp in rolled.loops:
            out = rolled.nodes[lp.output]
            scene.items.append(Item(lp.output, "state", (_state_label(lp.name, "t"), shape_text(out.shape))))
            scene.links.append(Link(box[anatomy.block_of(lp)], lp.output, "state"))
            if lp in read:
                into = []
                for b in blocks:
                    if lp.input in b.reads:
                        sym = anatomy.edge_label(lp.input, b) if labels else None
                        into.append((box[b], f"{sym} · {_delay_label(lp)}" if sym else _delay_label(lp)))
                _delay(scene, lp.output, into, "feedback", lp.delay)
        _head_items(scene, anatomy, params, "t", None, lambda nid: nid)
        fb = rolled.feedback
        if fb is not None:
            src = rolled.target if fb.feed == "teacher" else rolled.output
            into = [(box[b], ", ".join(w for w in (anatomy.edge_label(fb.input, b) if labels else None,
                                                   _FEED_WORDS[fb.feed]) if w))
                    for b in blocks if fb.input in b.reads]
            _delay(scene, src, into, "feedback")
        scene.same_rank.append([pid for pid in rolled.params if params == "nodes"] + ([x.id] if x else []))
    else:
        step = Cluster("viz.step", f"one step of {rolled.cell}")
        scene.clusters.append(step)
        scopes = _scope_clusters(scene, rolled, None, step.id, "")
        state_in = {lp.input: lp for lp in rolled.loops}
        state_out = {lp.output: lp.name for lp in rolled.loops}
        for nid, node in rolled.nodes.items():
            if node.role == "parameter" or (labels and nid in anatomy.hidden):
                continue
            where = scopes.get(nid, step.id)
            if nid in state_in:
                if state_in[nid] not in read:
                    continue
                item = Item(nid, "state", (_delay_label(state_in[nid]), shape_text(node.shape)), step.id)
            elif nid in state_out:
                item = Item(nid, "state", (_state_label(state_out[nid], "t"), _state_op(node),
                                           shape_text(node.shape)), where)
            elif x is not None and nid == x.id:
                item = Item(nid, "input", ("x(t)", shape_text(node.shape)), step.id)
            else:
                item = _op_item(anatomy, node, nid, where, "t", params)
            scene.items.append(item)
        for e in rolled.edges:
            if labels and (e.src in anatomy.hidden or e.dst in anatomy.hidden):
                continue
            kind = {"parameter": "param", "context": "context"}.get(rolled.nodes[e.src].role, "data")
            scene.links.append(Link(e.src, e.dst, kind))
        for lp in read:
            _delay(scene, lp.output, [lp.input], "feedback_back", lp.delay)
        fb = rolled.feedback
        if fb is not None:
            src = rolled.target if fb.feed == "teacher" else rolled.output
            _delay(scene, src, [fb.input], "feedback_back")
    legend(scene, states=rolled.state_names)
    return scene


# --- the unrolled graph -----------------------------------------------------------------------

def shown_steps(T, collapse):
    """The steps drawn: all, or the first and last `collapse` with the rest elided."""
    if collapse is None or 2 * collapse >= T:
        return list(range(T)), None
    return list(range(collapse)) + list(range(T - collapse, T)), (collapse, T - collapse)


def unrolled_scene(graph, detail, collapse=None, norms=None, scale=None, loss=None, params="labels"):
    """One cluster per step, left to right (Goodfellow et al. Figs. 10.2 right, 10.3): the weights on
    the edges of every step they act on, listed once beside the picture (or drawn once as nodes).

    norms: {state node id: ‖∂L/∂state‖} to colour the chain by `scale`.
    loss: (title rows, ids of drawn-or-elided state outputs the loss depends on), or None: a loss the
        user computed from the outputs outside the network.
    """
    rolled = graph.rolled
    anatomy = Anatomy(rolled)
    labels = params == "labels"
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
    read = rolled.read_loops()
    read_names = {lp.name for lp in read}

    def state_item(nid, name, when, cluster, shape, op=None):
        rows = [_state_label(name, when)] + ([op] if op else []) + [shape_text(shape)]
        norm, fill = norms.get(nid, "absent"), None
        if norm != "absent" and scale is not None:
            fill = scale.color(norm)
            rows.append(f"‖∂L/∂{name}‖ " + ("none" if norm is None else number(norm)))
        return Item(nid, "state", tuple(rows), cluster, fill)

    # Each initial state starts its own row, at the left of its chain (at the right, for a chain that
    # runs backward in time); the context and y0 beside them.
    backward_names = {lp.name for lp in rolled.loops if lp.delay < 0}
    for i, nid in enumerate(state0):
        if names[i] in read_names:
            when = str(start + T + 1) if names[i] in backward_names else str(start)
            scene.items.append(state_item(nid, names[i], when, None, graph.nodes[nid].shape))
    if read:
        scene.chain.append(state0[names.index(read[0].name)])
    _param_items(scene, anatomy, params, shared=True)
    for cid in graph.context:
        node = graph.nodes[cid]
        scene.items.append(Item(cid, "context", (node.label if len(graph.context) > 1 else "context",
                                                 shape_text(node.shape), "read by every step")))
    fb = rolled.feedback
    if fb is not None:
        y0 = graph.feedback0
        scene.items.append(Item(y0, "feedback", (f"y({start})", shape_text(graph.nodes[y0].shape), "fed to step 1")))
    scene.same_rank.append([nid for i, nid in enumerate(state0) if names[i] in read_names - backward_names]
                           + (list(rolled.params) if params == "nodes" else [])
                           + list(graph.context) + ([graph.feedback0] if fb else []))

    # Group the graph once, so a long sequence costs one pass however few steps are drawn.
    by_step = defaultdict(list)
    for nid, node in graph.nodes.items():
        t = graph.step_of.get(nid)
        if t in shown:
            by_step[t].append(node)

    def hidden(nid):
        return labels and graph.template_of.get(nid) in anatomy.hidden

    fed_within = set()
    if detail != "block":
        fed_within = {e.dst for e in graph.edges if graph.step_of.get(e.dst) in shown and not hidden(e.src)
                      and e.src not in state0 and graph.step_of.get(e.src) == graph.step_of[e.dst]}

    def source(nid):
        """Where an edge from state node `nid` starts in the picture: itself, or the elision."""
        t = out_step.get(nid)
        return elide if (t is not None and t not in shown) else nid

    def state_link(src, dst, label=None, backward=False):
        kind = "detached" if (detached and src in state0) else "state_back" if backward else "state"
        return Link(source(src), dst, kind, "detached" if kind == "detached" else label)

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
        incoming = [(graph.steps[t][lp.input], lp) for lp in read]
        if detail == "block":
            # x(t) sits under the first layer's blocks in the same column and the new states fill the
            # next column (a deeper layer's block and states the columns after), so the steps line up
            # in one row.  A backward chain runs right to left: its state sits left of its block.
            blocks, drawn = anatomy.blocks, graph.steps[t]
            box = {b: f"viz.block.t{t}" if len(blocks) == 1 else f"viz.block.t{t}.{k}" for k, b in enumerate(blocks)}
            top = max(b.layer for b in blocks)
            last = [nid for nid, lp in zip(state_out[t - 1], rolled.loops)
                    if not anatomy.block_of(lp).backward and anatomy.block_of(lp).layer == top][-1:] if t else []
            for b in blocks:
                words = f"step {when}" + ("" if not b.tag else f" {b.tag}" if b.tag in ("→", "←") else f", {b.tag}")
                scene.items.append(Item(box[b], "block", (cell, words), cl.id))
                (scene.chain2 if b.backward else scene.chain if b is blocks[0] else []).append(box[b])
            if rolled.step_index is not None:
                sid = graph.step_ids[t]
                scene.items.append(Item(sid, "step", (f"t = {start + t}",), cl.id))
            loop_in = {lp.input: lp for lp in read}
            made = {lp.output for lp in rolled.loops}
            for b in blocks:
                for r in b.reads:
                    label = anatomy.edge_label(r, b) if labels else None
                    if r == rolled.x and xid is not None:
                        scene.links.append(Link(xid, box[b], "input", label))
                    elif r == rolled.step_index:
                        scene.links.append(Link(graph.step_ids[t], box[b], "input"))
                    elif r in rolled.context:
                        scene.links.append(Link(drawn[r], box[b], "context", label))
                    elif r in made:
                        scene.links.append(Link(drawn[r], box[b], "data", label))
                    elif r in loop_in:
                        scene.links.append(state_link(drawn[r], box[b], label, b.backward))
                    elif fb is not None and r == fb.input:
                        scene.links.append(_fed_link(graph, anatomy, labels, t, box[b], source, elide, shown))
                _param_links(scene, anatomy, params, "step", box[b], b.params)
                if t and not read:  # no state carried: keep the steps in one row all the same
                    scene.links.append(Link(source(state_out[t - 1][0]), box[b], "order"))
                elif last and b.layer == 1 and top > 1:  # and after the top layer's last state
                    scene.links.append(Link(source(last[0]), box[b], "order"))
            head = [i for i in (rolled.output, rolled.loss) if _emits(rolled) or i != rolled.output]
            if rolled.target in drawn:   # y(t) above the block in its column, beside L(t), as in the book
                scene.links.extend(Link(box[b], drawn[rolled.target], "order") for b in blocks if b.layer == 1)
            scene.same_rank.append([box[b] for b in blocks if b.layer == 1] + ([xid] if xid is not None else [])
                                   + ([drawn[rolled.target]] if rolled.target in drawn else []))
            scene.same_rank.append([nid for nid, lp in zip(state_out[t], rolled.loops)
                                    if lp.delay > 0 and anatomy.block_of(lp).layer == top]
                                   + [drawn[i] for i in head if i is not None and i in drawn])
            for i, (nid, lp) in enumerate(zip(state_out[t], rolled.loops)):
                scene.items.append(state_item(nid, names[i], when, cl.id, graph.nodes[nid].shape))
                b = anatomy.block_of(lp)
                if not b.backward:
                    scene.links.append(Link(box[b], nid, "state"))
                    continue
                # The backward state sits left of its block, but right of the step before: its own column.
                scene.links.append(Link(box[b], nid, "state_back"))
                if t:
                    scene.links.append(Link(source((last or state_out[t - 1])[0]), nid, "order"))
            _head_items(scene, anatomy, params, when, cl.id, drawn.get, rows=any(b.backward for b in blocks))
        else:
            scopes = _scope_clusters(scene, graph, {n.id for n in by_step[t]}, cl.id, f"t{t}.")
            # Every op of step t that nothing else in the step feeds (x(t), a bias add) is ranked after
            # the incoming state; otherwise it floats left and the steps overlap in a staircase.
            roots = [n.id for n in by_step[t] if n.id not in fed_within and n.id not in state0 and not hidden(n.id)]
            anchor = incoming[0][0] if incoming else (state_out[t - 1][0] if t else None)
            if anchor is not None:
                scene.links.extend(Link(source(anchor), nid, "order") for nid in roots)
            for node in by_step[t]:
                if node.id == xid or node.id in state0 or hidden(node.id):
                    continue
                where = scopes.get(node.id, cl.id)
                if node.id in out_name:
                    scene.items.append(state_item(node.id, out_name[node.id], when, where, node.shape,
                                                  _state_op(node)))
                else:
                    scene.items.append(_op_item(anatomy, node, graph.template_of[node.id], where, when, params))
    if detail == "block":
        scene.chain.extend(ids[0] for t, ids in enumerate(state_out) if t in shown)
    else:  # one path of ops through every step, drawn straight, keeps the steps in one row
        spine = [n for n in anatomy.spine() if not (labels and n in anatomy.hidden)]
        scene.chain.extend(graph.steps[t][n] for t in steps for n in spine if n in graph.steps[t])
    if detail != "block":
        scene.links.extend(_ops_links(graph, shown, state0, out_step, source, state_link, hidden, labels))
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
        scene.items.append(Item("viz.colorbar", "colorbar", (scale.title(),), data={"ticks": scale.ticks()}))
    legend(scene, states=names)
    return scene


def _fed_link(graph, anatomy, labels, t, block, source, elide, shown):
    """What step t reads as y(t−1), drawn as an edge into its block: y0, o(t−1) or y(t−1)."""
    rolled = graph.rolled
    fb = rolled.feedback
    sym = anatomy.edge_label(fb.input) if labels else None
    if t == 0:
        return Link(graph.feedback0, block, "fed", sym)
    prev = graph.steps[t - 1]
    src = prev[rolled.target] if fb.feed == "teacher" else prev[rolled.output]
    src = src if t - 1 in shown else elide
    how = _FED.get(fb.feed, "one-hot" if fb.feed == "teacher" and graph.nodes[graph.fed[t]].op == "onehot" else None)
    return Link(source(src), block, "fed_side" if fb.feed == "teacher" and src != elide else "fed",
                ", ".join(w for w in (sym, how) if w) or None)


def _total_loss(scene, graph, shown, elide):
    """The network's loss L, fed by every drawn L(t) (and by the elision for those it hides)."""
    how = "Σ" if graph.reduction == "sum" else "mean"
    rows = [f"L = {how} L(t)" if len(graph.loss_steps) > 1 else f"L = L({graph.loss_steps[0] + 1})"]
    if graph.loss_value is not None:
        rows.append(f"= {number(graph.loss_value)}")
    scene.items.append(Item("viz.total", "loss", tuple(rows)))
    hidden = False
    last = max((t for t in graph.losses if t in shown), default=None)
    for t, lid in graph.losses.items():
        if t in shown:
            scene.links.append(Link(lid, "viz.total", "loss" if t == last else "loss_side"))
        else:
            hidden = True
    if hidden:
        scene.links.append(Link(elide, "viz.total", "loss"))


def _ops_links(graph, shown, state0, out_step, source, state_link, hidden, labels):
    """Edges among the drawn steps' ops; an edge from an elided step starts at the elision node."""
    node_t = graph.step_of
    seen, links = set(), []
    for e in graph.edges:
        if node_t.get(e.dst) not in shown or hidden(e.dst):
            continue
        src_node = graph.nodes[e.src]
        if hidden(e.src) or (labels and src_node.role == "parameter"):
            continue
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
