"""From a rolled step graph to a kernel plan, in named passes.

The traced step is split by what each node depends on:

    pre     nodes of parameters and constants only (W.T, slices of W): evaluated
            once per call with engine ops, so their gradients flow back through the engine;
    hoist   matmuls whose left operand depends on x(t) only: one GEMM over all T*B
            rows before the loop (engine ops), their gradients one GEMM each after it;
    rec     matmuls whose left operand depends on the carried state: one product per step;
    ew      element-wise ops, slices and last-axis concatenations: fused into one
            scalar loop over (batch, width) per phase;
    red     a sum or max over the features of a step value, keepdims (softmax's, a layer norm's):
            like a recurrent product it needs its operand in full, so it starts a phase;
    row     an element-wise op on such (batch, 1) values (log of a sum): computed with them, per
            batch row, before the phase's fused loop, which reads them broadcast over its columns;
    nd      a value of any other shape — over a source axis (S, B, A), N memory slots (B, N, W), a
            (B, 1) gate times a (B, W) value — or a sum, max, reshape, transpose or batched product
            of one: computed whole by a loop nest of its own after the row values, stored per step;
            a fused loop reads it only where it is (batch, width) like the loop's own values.

A matmul whose left operand is itself computed in the step needs that operand in
full first, so the step becomes phases: phase d runs after the products of depth d
(depth = number of recurrent products on the longest path from the state).  Each
element-wise node is placed in the latest phase its consumers allow, which keeps
the values that cross phases (and must be stored) few.

A teacher-forced y(t−1), known before the loop, is read beside x(t) as one step input (fed_as_input).

`make_plan` runs the passes in this order:

    classify          IR nodes -> each node's kind, and whether a gradient reaches it
    split_concat      concat([x, h]) @ W -> x @ W[:I] + h @ W[I:]   (the x half can then be hoisted;
                      a context's half, concat([y(t−1), C]) @ W, is then parameter-only: once per call)
    group_products    products sharing a left operand -> one product, right operands side by side
    insert_copies     state outputs and product operands made values a fused loop writes
    depths            node -> its phase depth, and each node's users
    liveness          what the loop needs: back from the new states
    schedule          the live nodes -> (pre, hoist, xpre, rec): what runs before and in the loop
    place             element-wise nodes -> the phase each runs in (the latest allowed)
    storage           which values are written to memory: new states, values read by a later
                      phase or a product, outputs the backward reads (rnn.kernels.arrays names them)
    phases            the Phase list, each with its loop width and the column blocks it computes
"""
from __future__ import annotations

from math import gcd

from minigrad.op import PRIMITIVES
from minigrad.walk import toposort

from .ir import (ALIASES, IRNode, Phase, Plan, UnsupportedCellError, access, build_ir, engine_value, fused,
                 last_axis_slice, nd_capable, new_node, reduces_rows, row_value, topo, unsupported, uses)


def make_plan(rolled):
    """The Plan of `rolled`'s step; UnsupportedCellError if a part of it cannot be compiled."""
    batch = rolled.batch
    if any(lp.delay != 1 for lp in rolled.loops):
        raise UnsupportedCellError("numba backend: only one-step delays are compiled")
    states = [(lp.name, lp.input, lp.output) for lp in rolled.loops]
    params = dict(rolled.params)
    state_ids = {s[1] for s in states}
    ir, x_id = fed_as_input(build_ir(rolled), rolled)

    def classified(nodes):
        # the loop computes the states alone: what only o(t) or L(t) needs is left out
        nodes = {nid: nodes[nid] for nid in topo(nodes, [s[2] for s in states])}
        classify(nodes, x_id, state_ids, params, rolled.frozen, set(rolled.context), rolled.step_index, batch)
        return nodes

    nodes = classified(ir)
    split_concat(nodes)
    nodes = classified(nodes)
    group_products(nodes)
    nodes = classified(nodes)
    states = insert_copies(nodes, states)
    nodes = classified(nodes)
    for n in nodes.values():
        if n.kind == "cat":  # not split away: a concatenation with a parameter or context the loop reads whole
            unsupported(n, ew_misfit(nodes, n, batch))

    depth, users = depths(nodes, batch)
    live = liveness(nodes, states)
    order = [nid for nid in nodes if nid in live]
    pre, hoist, xpre, rec = schedule(nodes, order)
    ew = [nid for nid in order if nodes[nid].kind == "ew"]
    rows = [nid for nid in order if nodes[nid].kind in ("red", "row")]
    nds = [nid for nid in order if nodes[nid].kind == "nd"]
    loop_of = place(nodes, ew, depth, users, live, {s[2] for s in states})
    plan = Plan(nodes, states, x_id, params, pre, hoist, xpre, rec, depth, loop_of, [], cell=rolled.cell,
                dtype=ir[x_id if x_id is not None else rolled.loops[0].input].dtype,
                step=rolled.step_index)
    storage(plan, ew, users)
    plan.phases = phases(plan, ew, batch, rows, nds)
    return plan


FED_X = "x+y(t-1)"  # the leaf of x(t) and the teacher-forced y(t−1) side by side


def fed_as_input(nodes, rolled):
    """(IR nodes, the step input's id) with a teacher-forced y(t−1) made part of the step input: it is
    known before the loop (y0, then the targets), so the kernels read [x(t), y(t−1)] as one input of
    which x(t) and y(t−1) are last-axis slices (the binding passes them side by side).  y(t−1) fed
    from the step's own output is a recurrence through o(t), not compiled."""
    fb, x_id = rolled.feedback, rolled.x
    if fb is None:
        return nodes, x_id
    if fb.feed != "teacher":
        raise UnsupportedCellError(f"numba backend: y(t−1) fed from the step's own output (feed={fb.feed!r}) is "
                                   "not compiled; teacher forcing (feed='teacher') is")
    y = nodes[fb.input]
    if x_id is None or nodes[x_id].width == 0:
        return nodes, fb.input
    x = nodes[x_id]
    I, K = x.width, y.width
    out = {FED_X: IRNode(FED_X, "leaf", [], x.shape[:-1] + (I + K,), {}, "input", "[x(t), y(t−1)]", x.dtype)}
    for nid, n in nodes.items():
        if nid in (x_id, fb.input):
            lo, hi = (0, I) if nid == x_id else (I, I + K)
            n = IRNode(nid, "getitem", [FED_X], n.shape, {"index": (slice(None), slice(lo, hi))}, "op",
                       "x(t)" if nid == x_id else "y(t−1)", n.dtype)
        out[nid] = n
    return out, FED_X


def classify(nodes, x_id, state_ids, param_ids, frozen=(), context_ids=(), step_id=None, batch=None):
    """Set each node's `kind` and `grad` (see the module docstring); refuse what cannot be compiled.
    nodes: IR nodes in topological order.  Returns {node id: the leaf kinds it depends on}."""
    deps = {}
    for nid, n in nodes.items():
        if n.op == "leaf":
            n.kind = ("x" if nid == x_id else "state" if nid in state_ids else "step" if nid == step_id
                      else "param" if nid in param_ids else "context" if nid in context_ids else "const")
            if n.kind == "const" and n.role != "constant":
                unsupported(n, "a leaf that is neither the step input, a state, a parameter nor a constant")
            want = nodes[x_id].dtype if x_id in nodes else n.dtype
            if n.kind in ("param", "state", "context") and n.dtype != want:
                unsupported(n, f"it is {n.dtype} and the step input is {want}: a kernel computes "
                               "in one dtype (convert the cell, e.g. all parameters to one dtype)")
            deps[nid] = {n.kind} if n.kind != "const" else set()
            # a frozen weight is an input with no gradient; t is a number, not a value to learn from
            n.grad = n.kind not in ("const", "step") and nid not in frozen
            continue
        deps[nid] = set().union(*(deps[a] for a in n.args))
        n.grad = any(nodes[a].grad for a in n.args)
        if not deps[nid] & {"x", "state", "step"}:
            n.kind = "pre"
        elif n.op == "matmul" and len(nodes[n.args[0]].shape) == 2 and nodes[n.args[0]].shape[0] == batch and \
                nodes[n.args[1]].kind in ("pre", "param", "const") and len(nodes[n.args[1]].shape) == 2:
            # a product's x side is hoisted out of the loop unless computing it needs the loop (a state, an nd value)
            n.kind = "hoist" if not deps[n.args[0]] & {"state", "nd"} else "rec"
        elif reduces_rows(n, nodes):
            n.kind = "red"
        elif fused(n.op) and n.op not in ALIASES and any(row_value(nodes[a]) for a in n.args) and \
                all(row_value(nodes[a]) or (engine_value(nodes[a]) and _size(nodes[a]) == 1) for a in n.args):
            n.kind = "row"
        else:
            why = ew_misfit(nodes, n, batch) if fused(n.op) else "not element-wise"
            if why is None:
                n.kind = "ew"
            elif nd_capable(n, nodes):
                n.kind = "nd"
                deps[nid].add("nd")
            elif _concat_of_rows(n, nodes):  # [y(t−1), C] @ W: split_concat may split it away
                n.kind = "cat"
            elif fused(n.op):
                unsupported(n, why)
            else:
                ops = ", ".join(sorted(name for name, p in PRIMITIVES.items() if p.elementwise))
                unsupported(n, f"supported in a step are products (matmul), the element-wise primitives "
                               f"({ops}), sum, max, reshape, transpose, and slices and concatenation along the "
                               "last axis")
    return deps


def _concat_of_rows(n, nodes):
    """A last-axis concatenation of (batch, features) values, some of them read whole (a context)."""
    return n.op == "concatenate" and n.attrs.get("axis", 0) in (-1, 1) and all(
        len(nodes[a].shape) == 2 for a in n.args)


def _size(node):
    size = 1
    for s in node.shape:
        size *= s
    return size


def split_concat(nodes):
    """Rewrite concat([a, b]) @ W  ->  a @ W[:Ia] + b @ W[Ia:] in place, so the x half can be hoisted."""
    for nid in list(nodes):
        n = nodes[nid]
        if n.op != "matmul" or n.kind not in ("hoist", "rec"):
            continue
        left = nodes[n.args[0]]
        if left.op != "concatenate" or left.attrs.get("axis", 0) % 2 != 1 or len(left.args) < 2:
            continue
        right, acc, r0 = n.args[1], None, 0
        for i, part in enumerate(left.args):
            r1 = r0 + nodes[part].width
            rows = new_node(nodes, f"{nid}.w{i}", "getitem", [right], (r1 - r0, nodes[right].shape[1]),
                            {"index": (slice(r0, r1),)}, "pre")
            prod = new_node(nodes, f"{nid}.p{i}", "matmul", [part, rows.id], n.shape, kind="")
            acc = prod.id if acc is None else new_node(nodes, f"{nid}.s{i}", "add", [acc, prod.id], n.shape,
                                                       kind="ew").id
            r0 = r1
        nodes[nid] = IRNode(nid, "copy", [acc], n.shape, {}, "op", n.label, kind="ew")


def group_products(nodes):
    """Rewrite products sharing a left operand in place into one product with their right operands
    side by side (one GEMM instead of several), each old product a slice of it."""
    groups = {}
    for nid, n in nodes.items():
        if n.op == "matmul" and n.kind in ("hoist", "rec"):
            groups.setdefault(n.args[0], []).append(nid)
    for left, mids in groups.items():
        if len(mids) < 2:
            continue
        rights = [nodes[m].args[1] for m in mids]
        total = sum(nodes[r].shape[1] for r in rights)
        cat = new_node(nodes, f"{left}.wcat", "concatenate", rights, (nodes[rights[0]].shape[0], total),
                       {"axis": 1}, "pre")
        first = nodes[mids[0]]
        prod = new_node(nodes, f"{left}.mm", "matmul", [left, cat.id], first.shape[:-1] + (total,), kind=first.kind)
        off = 0
        for m in mids:
            w = nodes[m].width
            nodes[m] = IRNode(m, "getitem", [prod.id], nodes[m].shape, {"index": (slice(None), slice(off, off + w))},
                              "op", nodes[m].label, kind="ew")
            off += w


def insert_copies(nodes, states):
    """Make state outputs and product operands values a fused loop writes out (a copy where they
    are not); returns the states [(name, in id, out id)] with their new out ids."""
    seen, out = set(), []
    for name, sin, sout in states:
        if nodes[sout].kind != "ew" or sout in seen:
            sout = new_node(nodes, f"{sout}.{name}", "copy", [sout], nodes[sout].shape, kind="ew").id
        seen.add(sout)
        out.append((name, sin, sout))
    for nid, n in list(nodes.items()):
        if n.kind == "rec" and nodes[n.args[0]].kind in ("rec", "nd"):
            n.args[0] = new_node(nodes, f"{nid}.left", "copy", [n.args[0]], nodes[n.args[0]].shape, kind="ew").id
    return out


def depths(nodes, batch):
    """({node id: phase depth}, {node id: the ids of the nodes that read it}): a recurrent product's
    depth is its left operand's plus one; an element-wise node's the largest of its arguments'.
    Checks each element-wise node's shapes on the way."""
    depth, users = {}, {nid: [] for nid in nodes}
    for nid, n in nodes.items():
        for a in n.args:
            users[a].append(nid)
        if n.kind == "ew":
            depth[nid] = max((depth.get(a, 0) for a in n.args), default=0)
        elif n.kind == "nd":  # after the fused loop that computes an element-wise operand
            depth[nid] = max((depth.get(a, 0) + (nodes[a].kind == "ew") for a in n.args), default=0)
        elif n.kind in ("rec", "red"):
            if nodes[n.args[0]].shape[:1] != (batch,):
                unsupported(n, f"its operand of shape {nodes[n.args[0]].shape} has no batch axis of {batch} rows")
            depth[nid] = depth.get(n.args[0], 0) + 1
        elif n.kind == "row":
            depth[nid] = max(depth.get(a, 0) for a in n.args)
        else:
            depth[nid] = 0
    return depth, users


def liveness(nodes, states):
    """The ids the loop needs: back from the new states through fused ops and in-loop products (of a
    hoisted product only its weight: its x side runs before the loop)."""
    def needs(nid):
        n = nodes[nid]
        return (n.args if n.kind in ("ew", "rec", "pre", "red", "row", "nd") else [n.args[1]] if n.kind == "hoist"
                else [])
    return set(toposort([s[2] for s in states], needs))


def schedule(nodes, order):
    """From the live ids in order: (pre: parameter-only nodes the engine evaluates per call, hoist:
    products over all T*B rows before the loop, xpre: the x-only nodes they read, rec: in-loop
    products)."""
    hoist = [nid for nid in order if nodes[nid].kind == "hoist"]
    rec = [nid for nid in order if nodes[nid].kind == "rec"]
    xpre = [nid for nid in topo(nodes, [nodes[h].args[0] for h in hoist])
            if nodes[nid].kind not in ("x", "param", "const", "pre")]
    pre_roots = [a for nid in order + xpre for a in nodes[nid].args if nodes[a].kind == "pre"]
    pre = [nid for nid in topo(nodes, pre_roots) if nodes[nid].kind == "pre"]
    return pre, hoist, xpre, rec


def place(nodes, ew, depth, users, live, outs):
    """{element-wise id: its phase}: the latest phase its consumers allow (a product of depth d needs
    its operand in phase d - 1), so that few values cross phases; new states in the last."""
    last = max((depth[nid] for nid in ew), default=0)
    loop_of = {}
    for nid in reversed(ew):
        limits = [loop_of[u] if nodes[u].kind == "ew" else depth[u] - 1
                  for u in users[nid] if u in live and nodes[u].kind in ("ew", "rec", "red", "nd")]
        if nid in outs or not limits:
            limits.append(last)
        loop_of[nid] = min(limits)
        assert loop_of[nid] >= depth[nid], (nid, loop_of[nid], depth[nid])
    return loop_of


def storage(plan, ew, users):
    """Fill plan.rec_left, plan.cross and plan.stored: which values go to memory, under which name."""
    nodes, loop_of = plan.nodes, plan.loop_of
    names = {sout: name for name, _, sout in plan.states}
    for r in plan.rec:
        plan.rec_left[nodes[r].args[0]] = r
    for nid in ew:
        later = any((u in loop_of and loop_of[u] > loop_of[nid]) or nodes[u].kind in ("red", "nd")
                    for u in users[nid])
        if later:
            plan.cross.add(nid)
        if nid in names:
            plan.stored[nid] = "state"
        elif later or nid in plan.rec_left:
            plan.stored[nid] = "value"
        elif uses(nodes[nid])[0]:
            plan.stored[nid] = "output"


def phases(plan, ew, batch, rows=(), nds=()):
    """The phases in order, each with its products, its row values, its nd values, its nodes, its loop
    width and demanded blocks."""
    out = []
    for d in range(max((plan.depth[nid] for nid in [*ew, *rows, *nds]), default=0) + 1):
        phase = Phase(d, [nid for nid in ew if plan.loop_of[nid] == d], [r for r in plan.rec if plan.depth[r] == d],
                      [r for r in rows if plan.depth[r] == d], [r for r in nds if plan.depth[r] == d])
        _demand(plan, phase, batch)
        out.append(phase)
    return out


def _per_step_vector(shape):
    """(W,) or (1, W): a value the same in every batch row that still changes with the step (made from
    t); the fused loop computes it in every row, as broadcasting would repeat it."""
    return len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)


def ew_misfit(nodes, n, batch):
    """Why the fused (batch, width) loops cannot compute `n`, or None when they can."""
    if not (len(n.shape) == 2 and n.shape[0] == batch) and not _per_step_vector(n.shape):
        return f"fused values must be (batch={batch}, width) or, made from t, (width,)"
    if n.op == "getitem":
        if last_axis_slice(n, nodes[n.args[0]].shape) is None:
            return f"only slices of the last axis are fused, got index {n.attrs.get('index')!r}"
    elif n.op == "concatenate":
        if n.attrs.get("axis", 0) not in (-1, 1) or any(len(nodes[a].shape) != 2 or engine_value(nodes[a])
                                                       for a in n.args):
            return "only concatenation of step values along the last axis is fused"
    for a in n.args:
        arg = nodes[a]
        if engine_value(arg):
            if n.op in ("getitem", "concatenate", "copy"):
                return "slicing a parameter inside the step"
            if access(arg, n, batch, must=False) is None:
                return f"operand {arg.id} of shape {arg.shape} does not broadcast along the last axis of shape {n.shape}"
        elif row_value(arg):
            if n.op in ("getitem", "concatenate", "copy") or arg.shape not in ((n.shape[0], 1), (), (1,), (1, 1)):
                return f"a (batch, 1) value of shape {arg.shape} is read only broadcast by element-wise ops"
        elif arg.kind == "nd" and (len(arg.shape) != 2 or arg.shape[0] != batch or
                                   (n.op not in ("getitem", "concatenate") and arg.shape != n.shape)):
            return f"an nd value of shape {arg.shape} read by a fused op of shape {n.shape}"
        elif n.op not in ("getitem", "concatenate") and arg.shape != n.shape and not (
                _per_step_vector(arg.shape) and arg.width == n.width):
            return f"broadcasting between step values of shapes {arg.shape} and {n.shape}"
    return None


def _cuts(nodes, n):
    """Column boundaries inside a fused phase: slice bounds and concatenation joints."""
    if n.op == "getitem":
        return last_axis_slice(n, nodes[n.args[0]].shape)
    if n.op == "concatenate":
        out, c = [], 0
        for a in n.args:
            c += nodes[a].width
            out.append(c)
        return out
    return ()


def _demand(plan, phase, batch):
    """The phase's loop width W (every width and cut in it is a multiple) and, per node, the column
    blocks k (columns k*W + j) it must compute: what is stored, and back from there what that reads."""
    nodes, inside = plan.nodes, set(phase.nodes)
    W = 0
    for nid in phase.nodes:
        n = nodes[nid]
        W = gcd(W, n.width, *_cuts(nodes, n))
        for a in n.args:
            if a not in inside and not engine_value(nodes[a]) and not row_value(nodes[a]):
                W = gcd(W, nodes[a].width)
    for r in phase.rows:  # a reduction's operand: its gradient is written here, after the fused loop
        if nodes[r].kind == "red":
            W = gcd(W, nodes[nodes[r].args[0]].width)
    for v in _nd_operands(nodes, phase):  # so is an nd value's
        W = gcd(W, nodes[v].width)
    phase.width = W = W or 1
    demand = {nid: set() for nid in phase.nodes}
    reads = {}
    for r in phase.rows:
        if nodes[r].kind == "red":
            v = nodes[r].args[0]
            reads.setdefault(v, set()).update(range(nodes[v].width // W))
    for v in _nd_operands(nodes, phase):
        reads.setdefault(v, set()).update(range(nodes[v].width // W))
    for nid in phase.nodes:
        if plan.stored.get(nid) in ("state", "value"):
            demand[nid] = set(range(nodes[nid].width // W))
    for nid in reversed(phase.nodes):
        n, blocks = nodes[nid], demand[nid]
        if n.op == "getitem":
            start = last_axis_slice(n, nodes[n.args[0]].shape)[0]
            targets = [(n.args[0], {k + start // W for k in blocks})]
        elif n.op == "concatenate":
            targets, c = [], 0
            for a in n.args:
                nb = nodes[a].width // W
                targets.append((a, {k - c for k in blocks if c <= k < c + nb}))
                c += nb
        else:
            targets = [(a, set(blocks)) for a in n.args]
        for a, ks in targets:
            if row_value(nodes[a]) or (engine_value(nodes[a]) and access(nodes[a], n, batch) == "scalar"):
                ks = {0} if ks else set()
            (demand if a in inside else reads).setdefault(a, set()).update(ks)
    phase.demand = {k: sorted(v) for k, v in demand.items()}
    phase.reads = {k: sorted(v) for k, v in reads.items()}


def _nd_operands(nodes, phase):
    """The loop-made operands (x, states, products, fused values) the phase's nd values read."""
    return [a for r in phase.nds for a in nodes[r].args if nodes[a].kind in ("x", "state", "hoist", "rec", "ew")]
