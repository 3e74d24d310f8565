"""From a rolled step graph to a kernel plan: what runs before the loop, what runs in which fused phase.

The traced step is split by what each node depends on:

    pre     nodes of parameters and constants only (W.T, slices of W): evaluated
            once per call with engine ops, so their gradients flow back through the engine;
    hoist   matmuls whose left operand depends on x(t) only: one GEMM over all T*B
            rows before the loop (engine ops), their gradients one GEMM each after it;
    rec     matmuls whose left operand depends on the carried state: one np.dot per step;
    ew      element-wise ops, slices and last-axis concatenations: fused into one
            scalar loop over (batch, width) per phase.

A matmul whose left operand is itself computed in the step needs that operand in
full first, so the step becomes phases: phase d runs after the products of depth d
(depth = number of recurrent products on the longest path from the state).  Each
element-wise node is placed in the latest phase its consumers allow, which keeps
the values that cross phases (and must be stored) few.

Two rewrites before that: ``concat([x, h]) @ W`` becomes ``x @ W[:I] + h @ W[I:]``
(the x half is then hoisted), and products sharing a left operand become one
product with the right operands side by side (one GEMM instead of several).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

from minigrad.op import PRIMITIVES
from minigrad.walk import toposort

ALIASES = {"getitem", "concatenate", "copy"}  # fused ops that only re-index: no arithmetic of their own


def fused(op):
    """Whether the generator fuses `op` into its element-wise loops: a re-indexing op, or a primitive
    whose record has scalar forms."""
    prim = PRIMITIVES.get(op)
    return op in ALIASES or (prim is not None and prim.elementwise)


_USES: dict = {}


def uses(node):
    """(whether the op's derivative reads its output, [whether it reads each argument]): found by
    asking the primitive's partials for their text with marker names.  An output it reads is kept
    for the backward (tanh, sigmoid, exp: dearer to recompute than to load)."""
    if node.op in ALIASES:
        return False, [False] * len(node.args)
    key = (node.op, len(node.args), repr(sorted(node.attrs.items())))
    got = _USES.get(key)
    if got is None:
        marks = [f"\x00a{i}\x00" for i in range(len(node.args))]
        text = " ".join(t for t in PRIMITIVES[node.op].partial_forms("\x00g\x00", "\x00out\x00", marks,
                                                                      node.attrs, lambda v: "c") if t)
        got = _USES[key] = ("\x00out\x00" in text, [m in text for m in marks])
    return got


class UnsupportedCellError(ValueError):
    """The traced step uses an op (or a form of one) the kernel generator cannot fuse."""


class KernelError(RuntimeError):
    """The generated kernels could not be written, loaded or compiled here (the message says where)."""


@dataclass
class IRNode:
    id: str
    op: str            # primitive name, "leaf" or "copy"
    args: list
    shape: tuple
    attrs: dict
    role: str          # rolled-graph role of a leaf, else "op"
    label: str = ""
    dtype: str = ""
    value: object = None
    kind: str = ""     # x, state, param, const, pre, hoist, rec, ew
    grad: bool = True  # whether a gradient can reach a leaf below it

    @property
    def width(self):
        return self.shape[-1] if self.shape else 1


@dataclass
class Plan:
    nodes: dict                      # id -> IRNode, topological order
    states: list                     # [(name, in_id, out_id)]
    x: str
    params: dict                     # rolled leaf id -> parameter name
    pre: list                        # ids of engine-evaluated parameter-only nodes, in order
    hoist: list                      # ids of hoisted matmuls
    xpre: list                       # ids of x-only nodes evaluated over all T*B rows for the hoisted GEMMs
    rec: list                        # ids of in-loop matmuls
    depth: dict                      # node id -> phase depth
    loop_of: dict                    # ew node id -> phase
    phases: list                     # [Phase]
    stored: dict = field(default_factory=dict)   # ew node id -> storage name (S_*, V_*, Y_*)
    cross: set = field(default_factory=set)      # ew ids read by a later phase
    rec_left: dict = field(default_factory=dict)  # value id -> rec matmul id using it as left operand
    cell: str = ""
    dtype: str = "float64"


@dataclass
class Phase:
    index: int
    nodes: list                      # ew node ids in this phase, topological order
    matmuls: list                    # rec matmul ids that run just before this phase
    width: int = 1                   # W: the loop runs over (batch, W); every width is a multiple
    demand: dict = field(default_factory=dict)   # node id -> sorted blocks k (columns k*W + j)
    reads: dict = field(default_factory=dict)    # input id -> sorted blocks read


def unsupported(node, why):
    name = f" '{node.label}'" if node.label and node.label != node.op else ""
    raise UnsupportedCellError(f"numba backend: op '{node.op}' at node {node.id}{name} (shape {node.shape}) "
                               f"cannot be fused: {why}")


def build_ir(rolled):
    args = rolled.arguments()
    nodes = {}
    for nid in rolled.topological_order():
        n = rolled.nodes[nid]
        nodes[nid] = IRNode(nid, n.op, list(args[nid]), tuple(n.shape), dict(n.attrs), n.role,
                            n.label, n.dtype, n.value)
    return nodes


def topo(nodes, roots):
    """Ids reachable from roots, arguments first."""
    return toposort(roots, lambda nid: nodes[nid].args)


def last_axis_slice(node, shape):
    """(start, stop) of a getitem that slices only the last axis of a (B, w) value, else None."""
    index = node.attrs.get("index")
    index = index if isinstance(index, tuple) else (index,)
    rest = [i for i in index if i is not Ellipsis]
    if len(shape) != 2 or not rest or not isinstance(rest[-1], slice):
        return None
    if not (len(rest) == 2 or (len(rest) == 1 and len(index) == 2)) or any(i != slice(None) for i in rest[:-1]):
        return None  # a bare slice, or an index into the batch axis
    start, stop, step = rest[-1].indices(shape[-1])
    return (start, stop) if step == 1 and stop > start else None


def classify(nodes, x_id, state_ids, param_ids, frozen=()):
    deps = {}
    for nid, n in nodes.items():
        if n.op == "leaf":
            n.kind = ("x" if nid == x_id else "state" if nid in state_ids
                      else "param" if nid in param_ids else "const")
            if n.kind == "const" and n.role != "constant":
                unsupported(n, "a leaf that is neither the step input, a state, a parameter nor a constant")
            want = nodes[x_id].dtype if x_id in nodes else n.dtype
            if n.kind in ("param", "state") and n.dtype != want:
                unsupported(n, f"it is {n.dtype} and the step input is {want}: a kernel computes "
                               "in one dtype (convert the cell, e.g. all parameters to one dtype)")
            deps[nid] = {n.kind} if n.kind != "const" else set()
            n.grad = n.kind != "const" and nid not in frozen  # a frozen weight is an input with no gradient
            continue
        deps[nid] = set().union(*(deps[a] for a in n.args))
        n.grad = any(nodes[a].grad for a in n.args)
        if not deps[nid] & {"x", "state"}:
            n.kind = "pre"
        elif n.op == "matmul":
            left, right = (nodes[a] for a in n.args)
            if right.kind not in ("pre", "param") or len(right.shape) != 2:
                unsupported(n, "the right operand of a product must be a 2-d parameter (or W.T, a slice of W)")
            if len(left.shape) != 2:
                unsupported(n, "the left operand of a product must be (batch, features)")
            n.kind = "hoist" if "state" not in deps[n.args[0]] else "rec"
        elif fused(n.op):
            n.kind = "ew"
        else:
            ops = ", ".join(sorted(name for name, p in PRIMITIVES.items() if p.elementwise))
            unsupported(n, f"supported in a step are matmul by a parameter, the element-wise primitives "
                           f"({ops}), last-axis slices and concatenation")
    return deps


def _new(nodes, nid, op, args, shape, attrs=None, kind=""):
    nodes[nid] = IRNode(nid, op, list(args), tuple(shape), attrs or {}, "op", op, kind=kind)
    return nodes[nid]


def split_concat_products(nodes):
    """concat([a, b]) @ W  ->  a @ W[:Ia] + b @ W[Ia:], so the x half can be hoisted."""
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
            rows = _new(nodes, f"{nid}.w{i}", "getitem", [right], (r1 - r0, nodes[right].shape[1]),
                        {"index": (slice(r0, r1),)}, "pre")
            prod = _new(nodes, f"{nid}.p{i}", "matmul", [part, rows.id], n.shape, kind="")
            acc = prod.id if acc is None else _new(nodes, f"{nid}.s{i}", "add", [acc, prod.id], n.shape, kind="ew").id
            r0 = r1
        nodes[nid] = IRNode(nid, "copy", [acc], n.shape, {}, "op", n.label, kind="ew")


def group_products(nodes):
    """Products sharing a left operand become one product with their right operands side by side."""
    groups = {}
    for nid, n in nodes.items():
        if n.op == "matmul" and n.kind in ("hoist", "rec"):
            groups.setdefault(n.args[0], []).append(nid)
    for left, mids in groups.items():
        if len(mids) < 2:
            continue
        rights = [nodes[m].args[1] for m in mids]
        total = sum(nodes[r].shape[1] for r in rights)
        cat = _new(nodes, f"{left}.wcat", "concatenate", rights, (nodes[rights[0]].shape[0], total),
                   {"axis": 1}, "pre")
        first = nodes[mids[0]]
        prod = _new(nodes, f"{left}.mm", "matmul", [left, cat.id], first.shape[:-1] + (total,), kind=first.kind)
        off = 0
        for m in mids:
            w = nodes[m].width
            nodes[m] = IRNode(m, "getitem", [prod.id], nodes[m].shape, {"index": (slice(None), slice(off, off + w))},
                              "op", nodes[m].label, kind="ew")
            off += w


def kind_of(nodes, nid):
    return nodes[nid].kind


def engine_value(node):
    return node.kind in ("param", "const", "pre")


def access(arg, consumer, batch):
    """How a fused loop reads a parameter/constant value next to a (B, w) consumer."""
    size = 1
    for s in arg.shape:
        size *= s
    if size == 1:
        return "scalar"
    if arg.shape in ((consumer.width,), (1, consumer.width)):
        return "vec"
    if arg.shape == (batch, consumer.width):
        return "mat"
    unsupported(consumer, f"operand {arg.id} of shape {arg.shape} does not broadcast along the last axis "
                          f"of shape {consumer.shape}")


def insert_copies(nodes, states):
    """State outputs and product operands must be values a fused loop writes out."""
    seen, out = set(), []
    for name, sin, sout in states:
        if nodes[sout].kind != "ew" or sout in seen:
            sout = _new(nodes, f"{sout}.{name}", "copy", [sout], nodes[sout].shape, kind="ew").id
        seen.add(sout)
        out.append((name, sin, sout))
    for nid, n in list(nodes.items()):
        if n.kind == "rec" and nodes[n.args[0]].kind == "rec":
            n.args[0] = _new(nodes, f"{nid}.left", "copy", [n.args[0]], nodes[n.args[0]].shape, kind="ew").id
    return out


def make_plan(rolled):
    batch = rolled.batch
    if any(lp.delay != 1 for lp in rolled.loops):
        raise UnsupportedCellError("numba backend: only one-step delays are compiled")
    states = [(lp.name, lp.input, lp.output) for lp in rolled.loops]
    x_id, params = rolled.x, dict(rolled.params)
    state_ids = {s[1] for s in states}
    nodes = build_ir(rolled)

    def reclassify():
        nonlocal nodes
        order = topo(nodes, [s[2] for s in states])
        nodes = {nid: nodes[nid] for nid in order}
        classify(nodes, x_id, state_ids, params, rolled.frozen)

    reclassify()  # the loop computes the states alone: what only o(t) or L(t) needs is left out
    split_concat_products(nodes)
    reclassify()
    group_products(nodes)
    reclassify()
    states = insert_copies(nodes, states)
    reclassify()

    outs = {s[2] for s in states}
    depth, users = {}, {nid: [] for nid in nodes}
    for nid, n in nodes.items():
        for a in n.args:
            users[a].append(nid)
        if n.kind == "ew":
            depth[nid] = max((depth.get(a, 0) for a in n.args), default=0)
            _check_ew(nodes, n, batch)
        elif n.kind == "rec":
            depth[nid] = depth.get(n.args[0], 0) + 1
        else:
            depth[nid] = 0

    # what the loop needs: back from the new states through fused ops and in-loop products (of a
    # hoisted product only its weight: its x side runs before the loop)
    def needs(nid):
        n = nodes[nid]
        return n.args if n.kind in ("ew", "rec", "pre") else [n.args[1]] if n.kind == "hoist" else []
    live = set(toposort([s[2] for s in states], needs))
    order = [nid for nid in nodes if nid in live]
    hoist = [nid for nid in order if nodes[nid].kind == "hoist"]
    rec = [nid for nid in order if nodes[nid].kind == "rec"]
    xpre = [nid for nid in topo(nodes, [nodes[h].args[0] for h in hoist])
            if nodes[nid].kind not in ("x", "param", "const", "pre")]
    pre_roots = [a for nid in order + xpre for a in nodes[nid].args if nodes[a].kind == "pre"]
    pre = [nid for nid in topo(nodes, pre_roots) if nodes[nid].kind == "pre"]

    ew = [nid for nid in order if nodes[nid].kind == "ew"]
    D = max((depth[nid] for nid in ew), default=0)
    loop_of = {}
    for nid in reversed(ew):
        limits = [loop_of[u] if nodes[u].kind == "ew" else depth[u] - 1
                  for u in users[nid] if u in live and nodes[u].kind in ("ew", "rec")]
        if nid in outs or not limits:
            limits.append(D)
        loop_of[nid] = min(limits)
        assert loop_of[nid] >= depth[nid], (nid, loop_of[nid], depth[nid])

    plan = Plan(nodes, states, x_id, params, pre, hoist, xpre, rec, depth, loop_of, [], cell=rolled.cell,
                dtype=rolled.nodes[x_id].dtype)
    names = {sout: name for name, _, sout in states}
    for r in rec:
        plan.rec_left[nodes[r].args[0]] = r
    for nid in ew:
        n = nodes[nid]
        later = any(u in loop_of and loop_of[u] > loop_of[nid] for u in users[nid])
        if later:
            plan.cross.add(nid)
        if nid in names:
            plan.stored[nid] = f"S_{names[nid]}"
        elif later or nid in plan.rec_left:
            plan.stored[nid] = f"V_{nid}"
        elif uses(n)[0]:
            plan.stored[nid] = f"Y_{nid}"
    for d in range(D + 1):
        phase = Phase(d, [nid for nid in ew if loop_of[nid] == d], [r for r in rec if depth[r] == d])
        _demand(plan, phase, batch)
        plan.phases.append(phase)
    return plan


def _check_ew(nodes, n, batch):
    if len(n.shape) != 2 or n.shape[0] != batch:
        unsupported(n, f"fused values must be (batch={batch}, width)")
    if n.op == "getitem":
        if last_axis_slice(n, nodes[n.args[0]].shape) is None:
            unsupported(n, f"only slices of the last axis are fused, got index {n.attrs.get('index')!r}")
    elif n.op == "concatenate":
        if n.attrs.get("axis", 0) not in (-1, 1) or any(len(nodes[a].shape) != 2 or engine_value(nodes[a])
                                                       for a in n.args):
            unsupported(n, "only concatenation of step values along the last axis is fused")
    for a in n.args:
        arg = nodes[a]
        if engine_value(arg):
            if n.op in ("getitem", "concatenate", "copy"):
                unsupported(n, "slicing a parameter inside the step")
            access(arg, n, batch)
        elif n.op not in ("getitem", "concatenate") and arg.shape != n.shape:
            unsupported(n, f"broadcasting between step values of shapes {arg.shape} and {n.shape}")


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
    nodes, inside = plan.nodes, set(phase.nodes)
    W = 0
    for nid in phase.nodes:
        n = nodes[nid]
        W = gcd(W, n.width, *_cuts(nodes, n))
        for a in n.args:
            if a not in inside and not engine_value(nodes[a]):
                W = gcd(W, nodes[a].width)
    phase.width = W = W or 1
    demand = {nid: set() for nid in phase.nodes}
    reads = {}
    for nid in phase.nodes:
        if nid in plan.stored and plan.stored[nid][0] in "SV":
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
            if engine_value(nodes[a]) and access(nodes[a], n, batch) == "scalar":
                ks = {0} if ks else set()
            (demand if a in inside else reads).setdefault(a, set()).update(ks)
    phase.demand = {k: sorted(v) for k, v in demand.items()}
    phase.reads = {k: sorted(v) for k, v in reads.items()}
