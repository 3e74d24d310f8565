"""The generator's intermediate representation: the traced step as IR nodes, the plan the passes
build from them, and what the generator knows about each op.

    IRNode   one value of the step: its op, arguments, shape, and what the passes decide about it —
             its `kind` (x, state, param, const; pre, hoist, rec, ew: see passes.classify) and
             whether a gradient can reach it
    Phase    one fused loop over (batch, width) inside the time loop, after its recurrent products,
             row values and nd values
    Plan     the whole step scheduled: what runs before the loop, in which phase, what is stored

`fused(op)` and `uses(node)` read the primitives' records (minigrad.primitives): whether the
generator can fuse an op, and which of its inputs (and whether its output) its derivative reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
    kind: str = ""     # x, state, param, const, context, step; pre, hoist, rec, ew, red, row, nd
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
    stored: dict = field(default_factory=dict)   # ew node id -> "state", "value" or "output" (see passes.storage)
    cross: set = field(default_factory=set)      # ew ids read by a later phase
    rec_left: dict = field(default_factory=dict)  # value id -> rec matmul id using it as left operand
    cell: str = ""
    dtype: str = "float64"
    step: str | None = None                      # the step index t's leaf, when the step reads it


@dataclass
class Phase:
    index: int
    nodes: list                      # ew node ids in this phase, topological order
    matmuls: list                    # rec matmul ids that run just before this phase
    rows: list = field(default_factory=list)     # red and row ids computed after them, per batch row
    nds: list = field(default_factory=list)      # nd ids computed after those, each by its own loop nest
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


def new_node(nodes, nid, op, args, shape, attrs=None, kind=""):
    nodes[nid] = IRNode(nid, op, list(args), tuple(shape), attrs or {}, "op", op, kind=kind)
    return nodes[nid]


def row_value(node):
    """A value with one number per batch row: a reduction over the features (red), or an op on such
    values (row).  It is computed between the fused loops, per batch row, and read by them as a
    broadcast over the columns.  The step index t is one too (the same in every row)."""
    return node.kind in ("red", "row", "step")


def reduces_rows(node, nodes):
    """Whether `node` is a sum or max over the last axis of a (batch, width) step value, keeping it."""
    if node.op not in ("sum", "max") or len(node.args) != 1:
        return False
    arg = nodes[node.args[0]]
    axis = node.attrs.get("axis")
    return (len(arg.shape) == 2 and axis in (-1, 1, (-1,), (1,)) and node.attrs.get("keepdims", False)
            and arg.kind in ("x", "state", "hoist", "rec", "ew"))


def engine_value(node):
    return node.kind in ("param", "const", "pre", "context")


def access(arg, consumer, batch, must=True):
    """How a fused loop reads a parameter/constant value next to a (B, w) consumer: "scalar", "vec"
    or "mat"; where it cannot, UnsupportedCellError (or None when not `must`)."""
    size = 1
    for s in arg.shape:
        size *= s
    if size == 1:
        return "scalar"
    if arg.shape in ((consumer.width,), (1, consumer.width)):
        return "vec"
    if arg.shape == (batch, consumer.width):
        return "mat"
    if must:
        unsupported(consumer, f"operand {arg.id} of shape {arg.shape} does not broadcast along the last axis "
                              f"of shape {consumer.shape}")
    return None


ND_OPS = ("sum", "max", "reshape", "transpose", "matmul")  # besides the element-wise primitives


def nd_capable(node, nodes):
    """Whether `node` can be an nd value: computed whole, per step, by a loop nest of its own (a value
    of any shape — a source axis, N memory slots, k heads — that the (batch, width) loops cannot hold)."""
    if node.op in ALIASES:
        return False
    if node.op == "matmul":
        return all(len(nodes[a].shape) >= 2 for a in node.args)
    prim = PRIMITIVES.get(node.op)
    return node.op in ND_OPS or (prim is not None and prim.elementwise)


