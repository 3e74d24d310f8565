"""Python source of the fused forward and BPTT kernels, generated from a kernel plan.

forward(T, B, dims, K, arrays...) runs the loop over time over all batch rows (forward_rows(T, B, b0, b1,
...), the same body over rows b0..b1-1: where no row reads another, rnn.kernels.threads may run blocks
of rows on workers at once); per step and phase it
computes the phase's recurrent products (helpers.matmul), then one loop over (batch, W)
computes every element-wise op of the phase as scalar temporaries, writing out
only the new states, the values later phases or the backward need, and the
outputs of sigmoid/tanh/exp.

backward(...) runs the same steps in reverse.  Per phase it recomputes the cheap
forward values the derivatives need (sums, products) from what was saved, then
sweeps the phase's ops in reverse with one scalar gradient per (op, column
block); products get their input gradient from one matmul per step (with W.T
passed row-major).  Gradients of hoisted inputs and of in-loop products are stored
per step so the weight gradients become single GEMMs after the loop (the binding does those).

The state gradients are double-buffered by step parity (buffer t & 1 receives
step t's state-input gradient while step t+1's is still being read), which lets
any phase read or write them in any order.  Widths never appear in the source:
columns are `k * W + j` with W from `dims`, so one source serves every hidden size.
Literals are avoided in arithmetic (`one`, `zero` come from K, an array of the
working dtype) so float32 kernels stay float32.

The emitter builds statements — lines, and loops holding statements — and renders them once; every
array is named through rnn.kernels.arrays, and every reference to one is written from its parts.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from minigrad.op import PRIMITIVES
from minigrad.walk import toposort

from . import arrays, onednn
from .describe import Names
from .helpers import ONEDNN_PRODUCT
from .ir import ALIASES as ALIAS, access, engine_value, last_axis_slice, row_value, uses
from .nd import NdEmitter
from .statements import Loop, at, ident, render, transposed

FAST_FLOAT32 = os.environ.get("MINIGRAD_EXACT_FLOAT32") != "1"  # see helpers.tanh_f32
FAST_FLOAT64 = os.environ.get("MINIGRAD_LIBM_FLOAT64") != "1"   # see helpers.tanh_f64

# The fused element-wise loops read and write a dozen arrays LLVM cannot prove distinct; past 8
# pointer checks its loop vectoriser gives up and the loops run scalar.  rnn.kernels.cache sets
# these options; they are named in every source, so changing them changes its hash.
LLVM_OPTIONS = ("-runtime-memory-check-threshold=512", "-vectorize-memory-check-threshold=512")

# Part of every kernel's text, so of the hash that names its file: a new generator never
# reads a file an older one wrote.  Bump it when the generated code changes meaning.
GENERATOR_VERSION = 5
HELPERS_HASH = hashlib.sha256((Path(__file__).parent / "helpers.py").read_bytes()).hexdigest()[:16]


ROWS = "b0:b1"  # a step's rows of the batch block a kernel runs (all of them, or one worker's)
ROW_LOOP = "for b in range(b0, b1)"


@dataclass
class Layout:
    """What the runtime allocates and passes; shapes use 'T', 'T+1', 'B', '2' and integer widths."""
    forward_args: list = field(default_factory=list)
    backward_args: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)     # name -> (kind, id or state name, shape spec)
    dims: list = field(default_factory=list)
    consts: list = field(default_factory=list)
    first_writer: dict = field(default_factory=dict)  # input id -> phase that assigns its gradient
    same: dict = field(default_factory=dict)  # gradient array never written -> the array equal to it
    full: set = field(default_factory=set)    # engine arrays passed in their own shape (read by nd values)
    notes: dict = field(default_factory=dict)  # array name -> what it holds, in the step's names
    summed: list = field(default_factory=list)  # backward_args indices of sums over the batch (engine gradients)
    onednn: bool = False  # the per-step products call oneDNN (rnn.kernels.onednn)
    hoisted_in_blocks: list = field(default_factory=list)  # hoisted products a split call's blocks may compute


class _Gen(NdEmitter):
    def __init__(self, plan, scratch=frozenset()):
        self.plan, self.nodes, self.lay = plan, plan.nodes, Layout()
        # in-loop products the backward never reads: one step's rows, rewritten every step, so
        # they stay in cache (a (T, B, 4H) array of them cost an LSTM 2% of its call)
        self.scratch, self.read_back, self.in_backward = scratch, set(), False
        self.names = Names(plan)
        self.state_of_in = {sin: (i, name) for i, (name, sin, _) in enumerate(plan.states)}
        self.state_of_out = {sout: (i, name) for i, (name, _, sout) in enumerate(plan.states)}
        self.sname = {name: (name if name.isidentifier() else f"s{i}") for i, (name, _, _) in enumerate(plan.states)}
        self.consts = {}  # numbers the scalar forms name (x ** 3): value -> index in K, after zero and one
        self.access = {}
        batch = self.nodes[plan.states[0][2]].shape[0]
        for ph in plan.phases:
            for nid in ph.nodes + ph.rows:
                for a in self.nodes[nid].args:
                    if engine_value(self.nodes[a]):
                        self.access[a] = access(self.nodes[a], self.nodes[nid], batch)
        self.batch = batch
        for ph in plan.phases:  # what only nd values read is passed whole (where it is not one number)
            for nid in ph.nds:
                for a in self.nodes[nid].args:
                    if engine_value(self.nodes[a]) and a not in self.access:
                        self.access[a] = "scalar" if math.prod(self.nodes[a].shape) == 1 else "full"
                        if self.access[a] == "full":
                            self.lay.full.add(arrays.name("engine", ident(a)))
        self.prezeroed = set()  # gradient arrays an nd section zeroed for the row values after it
        nstate = len(plan.states)
        offsets = [0]
        for _, _, sout in plan.states:
            offsets.append(offsets[-1] + self.nodes[sout].width)
        # phase widths, where each state sits in G, whether a block computes the hoisted products
        # itself (set per call by rnn.kernels.binding), then the batch size from which the per-step
        # products call BLAS (set per process by rnn.kernels.blas.blas_rows; 0 here)
        self.lay.dims = [ph.width for ph in plan.phases] + offsets[:nstate] + [0, 0]
        self.writers = {}
        for ph in plan.phases:
            for a in ph.reads:
                if not engine_value(self.nodes[a]):
                    self.writers.setdefault(a, []).append(ph.index)
        self.lay.first_writer = {a: max(ps) for a, ps in self.writers.items()}
        # row values a gradient reaches: not those only a stop_gradient reads (softmax's max shift)
        self.users = users = {nid: [] for nid in plan.nodes}  # node id -> the ids that read it
        for nid, n in plan.nodes.items():
            for a in n.args:
                users[a].append(nid)
        self.row_grads = set()
        for ph in reversed(plan.phases):
            for r in reversed(ph.rows):
                if self.nodes[r].grad and any(
                        self.nodes[u].op not in ("stop_gradient", "equal", "less")
                        and (not row_value(self.nodes[u]) or u in self.row_grads) for u in users.get(r, ())):
                    self.row_grads.add(r)

    # --- arrays, and references to their elements ----------------------------------------
    def array(self, kind, what, key, shape, note, backward_only=False):
        """The array of `kind` for `what` (registered in the layout on first use)."""
        name = arrays.name(kind, what)
        if name not in self.lay.arrays:
            self.lay.arrays[name] = (kind, key, shape)
            self.lay.notes[name] = note
            if not backward_only:
                self.lay.forward_args.append(name)
            self.lay.backward_args.append(name)
        return name

    def engine_ref(self, array, a, col):
        kind = self.access[a]
        return at(array, "0") if kind == "scalar" else at(array, "b", col) if kind == "mat" else at(array, col)

    def value_ref(self, a, col):
        """Where a phase reads input `a` (anything not computed in the phase) at column `col`."""
        n = self.nodes[a]
        if n.kind == "step":
            return "tval"
        if n.kind == "nd":
            return at(self.nd_array(a), "t", "b", col)
        if row_value(n):
            return at(self.row_array(a), "t", "b")
        if engine_value(n):
            return self.engine_ref(self.array("engine", ident(a), a, n.shape, self.names.arg(a)), a, col)
        array, row = self.step_array(a)
        return at(array, row, "b", col)

    def step_array(self, a):
        """(the array holding step value `a` — x(t), a state, a product, a stored value — at every
        step, its row for step t)."""
        n, say = self.nodes[a], self.names.arg(a)
        if n.kind == "x":
            return self.array("x", "", a, ("T", "B", n.width), "x(t)"), "t"
        if n.kind == "state":
            return self.state_array(self.state_of_in[a][1]), "t"
        if n.kind == "hoist":
            return self.array("hoist", ident(a), a, ("T", "B", n.width), f"{say}, every step, before the loop"), "t"
        if n.kind == "rec":
            if self.in_backward:
                self.read_back.add(a)
            return self.rec_array(a)
        return self.stored_array(a)

    def rec_array(self, r):
        """(the array of in-loop product `r`, its row for step t): every step's, or, where the backward
        does not read it, one step's."""
        if r in self.scratch:
            return self.array("rec", ident(r), r, (1, "B", self.nodes[r].width),
                              f"{self.names.arg(r)}, this step's (the backward does not read it)"), "0"
        return self.array("rec", ident(r), r, ("T", "B", self.nodes[r].width), f"{self.names.arg(r)}, per step"), "t"

    def row_array(self, a):
        return self.array("row", ident(a), a, ("T", "B"), f"{self.names.say(a)}, per step and batch row")

    def row_grad(self, a):
        return self.array("grad_row", ident(a), a, ("T", "B"), f"dL/d({self.names.say(a)}), per step", True)

    def state_array(self, name):
        sout = next(s for nm, _, s in self.plan.states if nm == name)
        return self.array("state", self.sname[name], name, ("T+1", "B", self.nodes[sout].width),
                          f"{name} at every step, [0] the initial state")

    def stored_array(self, nid):
        """(array holding value `nid` at every step, its row for step t)."""
        if nid in self.state_of_out:
            return self.state_array(self.state_of_out[nid][1]), "t + 1"
        kept = self.plan.stored[nid]
        prefix = arrays.STORED_OUTPUT if kept == "output" else arrays.KINDS["stored"].prefix
        name = prefix + ident(nid)
        if name not in self.lay.arrays:
            note = (f"{self.names.say(nid)}, kept for the backward" if kept == "output"
                    else f"{self.names.say(nid)}, read by a later phase or a product")
            self.lay.arrays[name] = ("stored", nid, ("T", "B", self.nodes[nid].width))
            self.lay.notes[name] = note
            self.lay.forward_args.append(name)
            self.lay.backward_args.append(name)
        return name, "t"

    def stored_ref(self, nid, col):
        array, row = self.stored_array(nid)
        return at(array, row, "b", col)

    def grad_ref(self, a, col, parity="p", row="b"):
        """Where the gradient of phase input `a` goes (a state's: buffer `parity`, p this step's,
        q the next step's), in batch row `row`."""
        n, say = self.nodes[a], self.names.arg(a)
        if n.kind == "state":
            name = self.state_of_in[a][1]
            arr = self.array("grad_state_ew", self.sname[name], name, ("2", "B", n.width),
                             f"dL/d{name}(t-1) from the fused ops, by step parity", True)
            return at(arr, parity, row, col)
        if n.kind == "ew":
            return at(self.array("grad_cross", ident(a), a, ("B", n.width), f"dL/d({say}) within a step", True),
                      row, col)
        if n.kind == "nd":
            return at(self.nd_grad(a), row, col)
        if n.kind in ("x", "hoist", "rec"):
            return at(self.grad_array(a), "t", row, col)
        return self.engine_ref(self.grad_array(a), a, col)

    def grad_kind(self, a):
        """(kind, what) of the gradient array of input `a`: a step input, a product or an engine value."""
        kind = self.nodes[a].kind
        return ("grad_x", "") if kind == "x" else ("grad_" + kind if kind in ("hoist", "rec") else "grad_engine", ident(a))

    def grad_array(self, a):
        """The gradient array of input `a`, registered in the layout."""
        n, say = self.nodes[a], self.names.arg(a)
        kind, what = self.grad_kind(a)
        if kind == "grad_engine":  # laid out as the kernel reads the value: (1, W) and (W,) alike as (W,)
            shape, note = {"scalar": (1,), "vec": (n.width,)}.get(self.access.get(a), n.shape), f"dL/d{say}"
        else:
            shape, note = ("T", "B", n.width), f"dL/d({say}), per step"
        return self.array(kind, what, a, shape, "dL/dx(t)" if kind == "grad_x" else note, True)

    def shareable(self, a, ph, blocks, terms, copies, whole):
        """A key equal for two inputs whose gradient arrays would hold the same numbers, else None.

        LSTM: x W_ih + b_ih + h W_hh + b_hh: the gradient of the hoisted product equals that of the
        recurrent one, and b_ih's that of b_hh: the second copy is not stored (docs/performance.md).
        Only arrays this phase alone writes, and writes whole (`whole`: assigned, or an engine
        value's sum over the loop), qualify; equal expressions over the same variables are equal
        values, so the key is the canonical text."""
        n = self.nodes[a]
        if not whole or not all(terms) or (n.kind not in ("x", "hoist", "rec") and not engine_value(n)):
            return None
        phases = [p.index for p in self.plan.phases if a in p.reads]
        if phases != [ph.index]:
            return None
        canon = tuple(tuple(sorted(copies.get(t, t) for t in ts)) for ts in terms)
        access = self.access.get(a) if engine_value(n) else "step"
        return (access, n.shape if engine_value(n) else n.width, tuple(blocks), canon)

    def rec_left_grad(self, v):
        """(buffer the product's matmul writes the gradient of its left operand `v` into, whether it
        is double-buffered by step parity)."""
        n = self.nodes[v]
        if n.kind == "state":
            name = self.state_of_in[v][1]
            return self.array("grad_state_mm", self.sname[name], name, ("2", "B", n.width),
                              f"dL/d{name}(t-1) from the products it enters, by step parity", True), True
        return self.array("grad_left", ident(v), v, ("B", n.width),
                          f"dL/d({self.names.arg(v)}) from the product it enters", True), False

    # --- per-phase scalar code -----------------------------------------------------
    def arg_blocks(self, n, k):
        """(argument id, block) pairs that element block k of node n reads."""
        if n.op == "getitem":
            start = last_axis_slice(n, self.nodes[n.args[0]].shape)[0]
            return [(n.args[0], k + start // self.W)]
        if n.op == "concatenate":
            c = 0
            for a in n.args:
                nb = self.nodes[a].width // self.W
                if c <= k < c + nb:
                    return [(a, k - c)]
                c += nb
        return [(a, 0 if row_value(self.nodes[a]) or (engine_value(self.nodes[a]) and self.access[a] == "scalar")
                 else k) for a in n.args]

    def resolve(self, nid, k):
        """Follow re-indexing ops inside the phase down to the value that holds block k."""
        while nid in self.inside and self.nodes[nid].op in ALIAS:
            nid, k = self.arg_blocks(self.nodes[nid], k)[0]
        return nid, k

    def col(self, k):
        self.cols.add(k)
        return "j" if k == 0 else f"c{k}"

    def var(self, nid, k):
        return f"{ident(nid)}_{k}"

    def load(self, out, nid, k):
        """Variable holding forward value (nid, k), loading it from memory if it is not computed here."""
        nid, k = self.resolve(nid, k)
        name = self.var(nid, k)
        if (nid, k) in self.defined:
            return name
        if nid in self.inside and not (self.backward and nid in self.plan.stored):
            raise AssertionError(f"{nid} block {k} used before it is computed")
        ref = self.stored_ref(nid, self.col(k)) if nid in self.inside else self.value_ref(nid, self.col(k))
        out.append(f"{name} = {ref}")
        self.defined.add((nid, k))
        return name

    def const(self, value):
        """The name under which the kernel reads the number `value` (a K entry of its dtype, so that a
        float32 kernel computes in float32)."""
        index = self.consts.setdefault(float(value), 2 + len(self.consts))
        return f"e{index}"

    def expr(self, n, k, vals):
        """The op's scalar form, from its primitive's record (minigrad.primitives)."""
        return PRIMITIVES[n.op].scalar_form(vals, n.attrs, self.const)

    def comment(self, n):
        role = f"  -> new state {self.state_of_out[n.id][1]}" if n.id in self.state_of_out else ""
        return f"# {self.names.line(n.id)}{role}" + (f"  [{n.id}]" if self.names.name(n.id) else "")

    def phase_forward(self, ph):
        self.begin(ph, backward=False)
        body = []
        for nid in ph.nodes:
            n = self.nodes[nid]
            if n.op in ALIAS or not ph.demand.get(nid):
                continue
            body.append(self.comment(n))
            for k in ph.demand[nid]:
                vals = [self.load(body, a, ak) for a, ak in self.arg_blocks(n, k)]
                body.append(f"{self.var(nid, k)} = {self.expr(n, k, vals)}")
                self.defined.add((nid, k))
        for nid in ph.nodes:
            if nid in self.plan.stored:
                for k in ph.demand[nid]:
                    body.append(f"{self.stored_ref(nid, self.col(k))} = {self.load(body, nid, k)}")
        return self.wrap(ph, body)

    def begin(self, ph, backward):
        self.inside, self.backward = set(ph.nodes), backward
        self.W = self.lay.dims[ph.index]  # the width here only maps blocks; the source uses the name
        self.wname, self.cols, self.defined = f"W{ph.index}", set(), set()

    def wrap(self, ph, body):
        head = [f"c{k} = {k} * {self.wname} + j" for k in sorted(self.cols) if k]
        return [f"# phase {ph.index}: element-wise ops fused over (batch, {self.wname})",
                Loop(ROW_LOOP, [Loop(f"for j in range({self.wname})", head + body)])]

    def needed(self, ph):
        """Forward values the derivatives in this phase use, closed over what computing them needs."""
        roots = []
        for nid in ph.nodes:
            n = self.nodes[nid]
            if n.op in ALIAS:
                continue
            out_used, args_used = uses(n)
            for k in ph.demand.get(nid, ()):
                args = self.arg_blocks(n, k)
                roots += [(nid, k)] * out_used + [a for a, used in zip(args, args_used) if used]

        def computed_from(block):  # what a value recomputed here is computed from (stored ones are loaded)
            nid, k = block
            if nid in self.inside and nid not in self.plan.stored:
                return [self.resolve(*a) for a in self.arg_blocks(self.nodes[nid], k)]
            return []
        return set(toposort([self.resolve(*r) for r in roots], computed_from))

    def phase_backward(self, ph):
        """The phase's reverse sweep: recompute what the derivatives read, gather the gradients
        arriving at its outputs, sweep its ops in reverse, write its inputs' gradients."""
        self.begin(ph, backward=True)
        body, need = [], self.needed(ph)
        body.append("# recompute the forward values the derivatives need")
        for nid in ph.nodes:
            n = self.nodes[nid]
            if n.op in ALIAS:
                continue
            for k in ph.demand.get(nid, ()):
                if (nid, k) not in need:
                    continue
                if nid in self.plan.stored:
                    self.load(body, nid, k)
                else:
                    vals = [self.load(body, a, ak) for a, ak in self.arg_blocks(n, k)]
                    body.append(f"{self.var(nid, k)} = {self.expr(n, k, vals)}")
                    self.defined.add((nid, k))
        # in graph order, not the set's: string hashes vary between processes, and so would the
        # source, its hash and the cached module, so every new process would compile again
        order = {nid: i for i, nid in enumerate(self.nodes)}
        for a, k in sorted(need, key=lambda ak: (order[ak[0]], ak[1])):
            if a not in self.inside:
                self.load(body, a, k)
        contrib = {}
        body.append("# gradients arriving from later steps, later phases and the loss")
        for nid in ph.nodes:
            if self.plan.stored.get(nid) in ("state", "value"):
                for k in ph.demand[nid]:
                    contrib[(nid, k)] = self.sources(nid, self.col(k))
        body.append("# reverse sweep")
        copies = {}  # gradient variable -> the expression it only copies
        for nid in reversed(ph.nodes):
            n = self.nodes[nid]
            for k in reversed(ph.demand.get(nid, ())):
                terms = contrib.pop((nid, k), [])
                if not terms:
                    continue
                if n.op in ALIAS and nid not in self.state_of_out:
                    g = " + ".join(terms)
                    g = f"({g})" if len(terms) > 1 else g
                else:
                    g = f"g_{self.var(nid, k)}"
                    body.append(f"{g} = {' + '.join(terms)}  # d/d {self.names.name(nid) or nid}")
                    if len(terms) == 1:
                        copies[g] = copies.get(terms[0], terms[0])
                    if nid in self.state_of_out:
                        name = self.state_of_out[nid][1]
                        ds = self.array("grad_states", self.sname[name], name, ("T", "B", n.width),
                                        f"dL/d{name}(t), for the per-step states' .grad", True)
                        body.append(f"{at(ds, 't', 'b', self.col(k))} = {g}")
                for (a, ak), term in zip(self.arg_blocks(n, k), self.partials(n, k, g)):
                    if term is not None and self.nodes[a].grad:
                        contrib.setdefault((a, ak), []).append(term)
        body.append("# gradients of this phase's inputs")
        pending = []
        for a, blocks in ph.reads.items():
            node = self.nodes[a]
            if not node.grad:
                continue
            if row_value(node):  # every column of every block adds to its one number per row
                terms = contrib.pop((a, 0), [])
                if terms:
                    body.append(f"{at(self.row_grad(a), 't', 'b')} += {' + '.join(terms)}")
                continue
            engine = engine_value(node)
            if not engine:
                assign = self.lay.first_writer[a] == ph.index
                blocks = range(node.width // self.W)
            terms = [contrib.pop((a, k), []) for k in blocks]
            accumulated = engine or node.kind == "nd"  # an nd value's gradient is summed over its readers
            pending.append((accumulated, a, blocks, terms, accumulated or assign))
        assert not contrib, contrib
        written = {}  # (kind of array, what is written per block) -> input whose array holds it
        sums = []     # (bias, step array): the bias's gradient is the step array summed over the batch
        for engine, a, blocks, terms, whole in sorted(pending, key=lambda p: p[0]):  # engine values last
            key = self.shareable(a, ph, blocks, terms, copies, whole)
            if key in written:  # equal to an array written already: let the runtime pass that one
                self.lay.same[arrays.name(*self.grad_kind(a))] = arrays.name(*self.grad_kind(written[key]))
                continue
            if key is not None:
                written[key] = a
                step = (written.get(("step", key[1][0], key[2], key[3]))
                        if key[0] == "vec" and len(key[1]) == 1 else None)
                if step is not None:
                    sums.append((a, step, len(blocks)))
                    continue
            for k, ts in zip(blocks, terms):
                if engine:
                    if ts:
                        body.append(f"{self.grad_ref(a, self.col(k))} += {' + '.join(ts)}")
                elif ts:
                    body.append(f"{self.grad_ref(a, self.col(k))} {'=' if whole else '+='} {' + '.join(ts)}")
                elif whole:
                    body.append(f"{self.grad_ref(a, self.col(k))} = zero")
        out = self.wrap(ph, body)
        # A bias's gradient is summed from the step array the loop wrote anyway, in a plain pass over
        # this step's rows, not accumulated inside the fused loop (docs/performance.md).
        for a, step, nb in sums:
            out += [Loop(ROW_LOOP, [Loop(f"for j in range({nb} * {self.wname})",
                                                    [f"{self.grad_ref(a, 'j')} += {self.grad_ref(step, 'j')}"])],
                         f"d {self.names.arg(a)} = sum over the batch of d({self.names.arg(step)})")]
        return out

    def sources(self, nid, col):
        """The gradient terms arriving at stored value `nid` from outside its phase."""
        terms = []
        if nid in self.state_of_out:
            i, name = self.state_of_out[nid]
            terms.append(at("G", "t", "b", f"g{i} + {col}"))
            sin = self.plan.states[i][1]
            if sin in self.writers:
                terms.append(self.grad_ref(sin, col, parity="q"))
            if sin in self.plan.rec_left:
                terms.append(at(self.rec_left_grad(sin)[0], "q", "b", col))
        if nid in self.plan.cross:
            terms.append(self.grad_ref(nid, col))
        if nid in self.plan.rec_left:
            terms.append(at(self.rec_left_grad(nid)[0], "b", col))
        return terms

    def partials(self, n, k, g):
        """The term each argument's gradient receives from g = dL/d(n, k): the primitive's partials."""
        if n.op in ALIAS:
            return [g]
        args = self.arg_blocks(n, k)
        vals = [self.var(*self.resolve(*a)) for a in args]
        return list(PRIMITIVES[n.op].partial_forms(g, self.var(n.id, k), vals, n.attrs, self.const))

    # --- row values: reductions over the features, and ops on them ----------------------
    def rows_forward(self, ph):
        """Per batch row, in order: each reduction over its operand's columns, each op on row values;
        each written to its (T, B) array for the fused loops to read broadcast."""
        if not ph.rows:
            return []
        self.begin(ph, backward=False)  # rows read no fused value: none is inside
        body = []
        for r in ph.rows:
            n = self.nodes[r]
            body.append(f"# {self.names.line(r)}  [{r}]")
            if n.kind == "red":
                array, row = self.step_array(n.args[0])
                v = at(array, row, "b", "j")
                if n.op == "sum":
                    body += ["acc = zero", Loop(f"for j in range({array}.shape[2])", [f"acc += {v}"])]
                else:  # a NaN anywhere makes the max NaN, as np.max does
                    body += [f"acc = {at(array, row, 'b', '0')}",
                             Loop(f"for j in range(1, {array}.shape[2])", [f"x = {v}", "if x > acc or x != x:",
                                                                            "    acc = x"])]
                body.append(f"{self.var(r, 0)} = acc")
            else:
                vals = [self.load(body, a, 0) for a in n.args]
                body.append(f"{self.var(r, 0)} = {self.expr(n, 0, vals)}")
            self.defined.add((r, 0))
            body.append(f"{at(self.row_array(r), 't', 'b')} = {self.var(r, 0)}")
        return [f"# row values of phase {ph.index}: one number per batch row", Loop(ROW_LOOP, body)]

    def rows_backward(self, ph):
        """Per batch row, the row values in reverse: each gathers dL/d(itself) from the fused loops and
        later row ops (its dR_ array), gives its arguments their terms; a sum's operand gets it in every
        column, a max's in the columns that hold the max (ties share it, as the engine's max does)."""
        rows = [r for r in ph.rows if r in self.row_grads]
        if not rows:
            return []
        self.begin(ph, backward=True)
        body = []
        for r in reversed(rows):
            n, g = self.nodes[r], f"g_{self.var(r, 0)}"
            body += [f"# d {self.names.line(r)}", f"{g} = {at(self.row_grad(r), 't', 'b')}"]
            if n.kind == "red":
                a = n.args[0]
                array, row = self.step_array(a)
                v, width = at(array, row, "b", "j"), f"{array}.shape[2]"
                target = self.grad_ref(a, "j")
                # no fused loop zeroed it, nor the nd values before
                first = self.lay.first_writer.get(a) == ph.index and not ph.nodes and a not in self.prezeroed
                op = "=" if first else "+="
                if n.op == "sum":
                    body.append(Loop(f"for j in range({width})", [f"{target} {op} {g}"]))
                else:
                    m = at(self.row_array(r), "t", "b")
                    body += ["cnt = zero", Loop(f"for j in range({width})", [f"if {v} == {m}:", "    cnt += one"])]
                    if first:
                        body.append(Loop(f"for j in range({width})", [f"{target} = zero"]))
                    body.append(Loop(f"for j in range({width})", [f"if {v} == {m}:", f"    {target} += {g} / cnt"]))
                continue
            vals = [self.load(body, a, 0) for a in n.args]
            out = self.load(body, r, 0)
            for a, term in zip(n.args, PRIMITIVES[n.op].partial_forms(g, out, vals, n.attrs, self.const)):
                if term is None or not self.nodes[a].grad:
                    continue
                if row_value(self.nodes[a]):
                    body.append(f"{at(self.row_grad(a), 't', 'b')} += {term}")
                else:
                    body.append(f"{self.grad_ref(a, '0')} += {term}")
        return [f"# row values of phase {ph.index}, in reverse", Loop(ROW_LOOP, body)]

    # --- whole kernels ----------------------------------------------------------------
    def weight(self, r):
        n = self.nodes[r]
        return self.array("rec_weight", ident(r), r, self.nodes[n.args[1]].shape,
                          f"{self.names.arg(n.args[1])}, the right operand of {self.names.text(r)}")

    def products_forward(self, ph):
        out = []
        for r in ph.matmuls:
            n = self.nodes[r]
            left = n.args[0]
            if left in self.state_of_in:
                lref = at(self.state_array(self.state_of_in[left][1]), "t", ROWS)
            else:
                lref = at(*self.stored_array(left), ROWS)
            w = self.weight(r)
            a, row = self.rec_array(r)
            out.append(f"matmul({lref}, {w}, {at(a, row, ROWS)}, blas_rows)  # {self.names.line(r)}")
        return out

    def products_backward(self, ph):
        out = []
        for r in ph.matmuls:
            n = self.nodes[r]
            buf, parity = self.rec_left_grad(n.args[0])
            da = self.grad_array(r)
            right_t = transposed(self.names.arg(n.args[1]))
            wt = self.array("rec_weight_t", ident(r), r, self.nodes[n.args[1]].shape[::-1],
                            f"{right_t}, row-major", True)
            target = at(buf, "p", ROWS) if parity else at(buf, ROWS)
            out.append(f"matmul({at(da, 't', ROWS)}, {wt}, {target}, blas_rows)  "
                       f"# d {self.names.arg(n.args[0])} = d({self.names.arg(r)}) @ {right_t}")
        return out

    def legend(self, args):
        """Comment lines saying what each array argument holds."""
        width = max((len(a) for a in args), default=0)
        return [f"# {a:<{width}}  {self.lay.notes[a]}" for a in args if a in self.lay.notes]

    def generate(self):
        fwd, bwd = [], []
        for ph in self.plan.phases:
            fwd += self.products_forward(ph)
            fwd += self.rows_forward(ph)
            fwd += self.nds_forward(ph)
            if ph.nodes:
                fwd += self.phase_forward(ph)
        self.in_backward = True
        for ph in reversed(self.plan.phases):
            if ph.nodes:
                bwd += self.phase_backward(ph)
            bwd += self.nds_backward(ph)
            bwd += self.rows_backward(ph)
            bwd += self.products_backward(ph)
        self.lay.onednn = self.onednn_products()
        hoisted = self.hoisted_in_block()
        self.array("grad_out", "", None, ("T", "B", None), "dL/d(new states), all states side by side", True)
        self.lay.consts = [0.0, 1.0] + list(self.consts)
        prelude = ["zero = K[0]", "one = K[1]"]
        prelude += [f"e{i} = K[{i}]" for i in self.consts.values()]
        prelude += [f"W{ph.index} = dims[{ph.index}]" for ph in self.plan.phases if ph.nodes]
        prelude += [f"blas_rows = dims[{len(self.lay.dims) - 1}]"]
        offsets = [f"g{i} = dims[{len(self.plan.phases) + i}]" for i in range(len(self.plan.states))]
        fargs, bargs = self.lay.forward_args, self.lay.backward_args
        self.lay.summed = [i for i, a in enumerate(bargs) if self.lay.arrays[a][0] == "grad_engine"]
        tanh, sigmoid = self.scalar_helpers()
        header = HEADER.format(cell=self.plan.cell, version=GENERATOR_VERSION, helpers=HELPERS_HASH,
                               llvm=" ".join(LLVM_OPTIONS), tanh=tanh, sigmoid=sigmoid,
                               matmul="matmul_onednn as matmul" if self.lay.onednn else "matmul")
        if self.plan.nodes.get(self.plan.step) is not None:  # the step index, in the kernel's dtype
            step = [f"tval = np.{self.plan.dtype}(t)  # the step index t"]
            fwd, bwd = step + fwd, step + bwd
        rows = "# batch rows b0..b1-1: {0}() runs them all" + (
            "; rnn.kernels.threads may run blocks of rows on workers at once" if self.separable() else "")
        split = ("# no value of a batch row reads another row: blocks of rows may run at once (rnn.kernels.threads)"
                 if self.separable() else "# values of a batch row read other rows: the rows run together")
        fbody = render(self.legend(fargs) + prelude + [Loop("for t in range(T)", fwd)], 1)
        fbody_rows = render(self.legend(fargs) + prelude + [Loop("for t in range(T)", hoisted + fwd)], 1)
        bbody = render(self.legend(bargs) + prelude + offsets
                       + [Loop("for t in range(T - 1, -1, -1)", ["p = t & 1  # this step's state-input gradients",
                                                                 "q = 1 - p  # the next step's, read as sources"] + bwd)], 1)
        source = [header, "", split, f"ROWS_INDEPENDENT = {self.separable()}"]
        # forward/backward over all rows, written out again rather than calling the _rows forms:
        # slicing the rows every step cost a small model's call 4% (Elman (100,1,32,32))
        for name, args, body in (("forward", fargs, fbody), ("backward", bargs, bbody)):
            source += ["", "", "@jit"] + _call(f"def {name}(", ["T", "B", "dims", "K"] + args, "):")
            source += _whole_batch(body)
        for name, args, body in (("forward", fargs, fbody_rows), ("backward", bargs, bbody)):
            source += ["", "", "@jit"] + _call(f"def {name}_rows(", ["T", "B", "b0", "b1", "dims", "K"] + args, "):")
            source += ["    " + rows.format(name)] + body
        return "\n".join(source) + "\n", self.lay

    def hoisted_in_block(self):
        """The lines by which a block of a split call computes its rows of each hoisted product x(t) @ W
        at the top of step t, where the call asks it to (dims): the rows are then in its core's cache
        when the fused loop reads them, where the product over all steps before the loop left them
        in memory (LSTM float32 (100,32,128,128): 0.25-0.30 ms a call).  Only where the per-step products
        go through oneDNN: its calls are as fast per flop at a block's 16-32 rows as the whole GEMM."""
        hoists = [(name, key) for name, (kind, key, _) in self.lay.arrays.items() if kind == "hoist"]
        if not self.lay.onednn or not hoists:
            return []
        lines = [f"if dims[{len(self.lay.dims) - 2}]:  # this block computes its rows of the hoisted products"]
        for name, key in hoists:
            n = self.nodes[key]
            left, right = n.args
            k, say = self.nodes[left].shape[-1], self.names.arg(right)
            xl = self.array("hoist_left", ident(key), key, ("T", "B", k),
                            f"{self.names.arg(left)}, the left operand of {self.names.text(key)}, every step")
            w = self.array("hoist_weight", ident(key), key, (k, n.width), f"{say}, row-major")
            product = f"matmul({at(xl, 't', ROWS)}, {w}, {at(name, 't', ROWS)}, blas_rows)"
            lines.append(f"    {product}  # {self.names.line(key)}")
            self.lay.notes[name] = (f"{self.names.arg(key)}, every step: before the loop, or by each block of a "
                                    "split call at the top of the step")
            self.lay.hoisted_in_blocks.append(name)
        return lines

    def onednn_products(self):
        """Whether the per-step products go through oneDNN (rnn.kernels.onednn): float32, the library
        there, and a product large enough for its call to pay (one that is not runs as it would without)."""
        sizes = [self.nodes[r].shape[0] * math.prod(self.nodes[self.nodes[r].args[1]].shape)
                 for ph in self.plan.phases for r in ph.matmuls]
        return self.plan.dtype == "float32" and max(sizes, default=0) >= ONEDNN_PRODUCT and onednn.available()

    def separable(self):
        """Whether no value of a batch row reads another row, so that blocks of rows may run the whole
        loop over time at once, on workers of their own (rnn.kernels.threads): no nd value (those may
        reduce or mix over the batch) and no context (read whole)."""
        return (not any(ph.nds for ph in self.plan.phases)
                and not any(n.kind == "context" for n in self.nodes.values()))

    def scalar_helpers(self):
        """The names of the tanh and sigmoid this kernel's dtype uses (rnn.kernels.helpers)."""
        if self.plan.dtype == "float32" and FAST_FLOAT32:
            return "tanh_f32", "sigmoid_f32"
        if self.plan.dtype == "float64" and FAST_FLOAT64:
            return "tanh_f64", "sigmoid_f64"
        return "tanh_exact", "sigmoid_exact"


HEADER = '''"""Fused forward and BPTT kernels generated by rnn.kernels (version {version}) from the traced step of {cell}.

Generated code: the file name is the hash of this text, and a file whose bytes differ is written again.
Built on rnn.kernels.helpers {helpers}, and compiled with these LLVM options (set by rnn.kernels.cache;
named here so that changing them changes the hash and Numba's on-disk cache is not reused across them):
    {llvm}
"""
import math  # noqa: F401  (scalar forms: math.exp, math.log)

import numpy as np  # noqa: F401  (the step index in the kernel's dtype)

from rnn.kernels.helpers import jit, {matmul}, {sigmoid} as _sigmoid, {tanh} as _tanh  # noqa: F401'''


def _whole_batch(lines):
    """A kernel body over rows b0..b1-1 as the body over all B rows: no slicing of the rows."""
    out = [line.replace(ROW_LOOP, "for b in range(B)").replace(f", {ROWS}]", "]").replace(f"[{ROWS}]", "")
           for line in lines]
    assert not any(ROWS in line or "range(b0" in line for line in out), "a row bound left in a whole-batch kernel"
    return out


def _call(head, args, tail, width=110):
    """`head` + the comma-separated `args` + `tail` as lines of at most about `width` characters, the
    continuation lines aligned after `head` (a kernel's argument lists run to dozens of arrays)."""
    lines, line = [], head
    for i, a in enumerate(args):
        piece = a + (", " if i < len(args) - 1 else tail)
        if len(line) + len(piece.rstrip()) > width and line.strip() != head.strip():
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece
    return lines + [line]


def generate(plan):
    """(source, layout) of the kernels for `plan`: generated twice where the first pass finds
    in-loop products the backward does not read, the second keeping one step of them."""
    gen = _Gen(plan)
    made = gen.generate()
    products = {r for ph in plan.phases for r in ph.matmuls}
    unread = frozenset(products - gen.read_back)
    return _Gen(plan, unread).generate() if unread else made
