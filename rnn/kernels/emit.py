"""Python source of the fused forward and BPTT kernels, generated from a kernel plan.

forward(T, B, dims, K, arrays...) runs the loop over time; per step and phase it
computes the phase's recurrent products (_matmul: fma loops while W fits in L2,
else np.dot), then one loop over (batch, W)
computes every element-wise op of the phase as scalar temporaries, writing out
only the new states, the values later phases or the backward need, and the
outputs of sigmoid/tanh/exp.

backward(...) runs the same steps in reverse.  Per phase it recomputes the cheap
forward values the derivatives need (sums, products) from what was saved, then
sweeps the phase's ops in reverse with one scalar gradient per (op, column
block); products get their input gradient from one _matmul per step (with W.T
passed row-major).  Gradients
of hoisted inputs and of in-loop products are stored per step so the weight
gradients become single GEMMs after the loop (rnn.fused does those).

The state gradients are double-buffered by step parity (buffer t & 1 receives
step t's state-input gradient while step t+1's is still being read), which lets
any phase read or write them in any order.  Widths never appear in the source:
columns are `k * W + j` with W from `dims`, so one source serves every hidden size.
Literals are avoided in arithmetic (`one`, `zero` come from K, an array of the
working dtype) so float32 kernels stay float32.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .cache import LLVM_OPTIONS
from minigrad.op import PRIMITIVES
from minigrad.walk import toposort

from .plan import ALIASES as ALIAS, access, engine_value, last_axis_slice, uses

FAST_FLOAT32 = os.environ.get("MINIGRAD_EXACT_FLOAT32") != "1"  # see FAST_F32 below
FAST_FLOAT64 = os.environ.get("MINIGRAD_LIBM_FLOAT64") != "1"   # see FAST_F64 below



def ident(nid):
    return "".join(c if c.isalnum() else "_" for c in nid)


@dataclass
class Layout:
    """What the runtime allocates and passes; shapes use 'T', 'T+1', 'B', '2' and integer widths."""
    forward_args: list = field(default_factory=list)
    backward_args: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)     # name -> (what, id or state name, shape spec)
    dims: list = field(default_factory=list)
    consts: list = field(default_factory=list)
    first_writer: dict = field(default_factory=dict)  # input id -> phase that assigns its gradient
    same: dict = field(default_factory=dict)  # gradient array never written -> the array equal to it


class _Gen:
    def __init__(self, plan):
        self.plan, self.nodes, self.lay = plan, plan.nodes, Layout()
        self.state_of_in = {sin: (i, name) for i, (name, sin, _) in enumerate(plan.states)}
        self.state_of_out = {sout: (i, name) for i, (name, _, sout) in enumerate(plan.states)}
        self.sname = {name: (name if name.isidentifier() else f"s{i}") for i, (name, _, _) in enumerate(plan.states)}
        self.consts = {}  # numbers the scalar forms name (x ** 3): value -> index in K, after zero and one
        self.access = {}
        for ph in plan.phases:
            for nid in ph.nodes:
                for a in self.nodes[nid].args:
                    if engine_value(self.nodes[a]):
                        self.access[a] = access(self.nodes[a], self.nodes[nid], self.nodes[nid].shape[0])
        nstate = len(plan.states)
        offsets = [0]
        for _, _, sout in plan.states:
            offsets.append(offsets[-1] + self.nodes[sout].width)
        # phase widths, where each state sits in G, then the batch size from which the per-step
        # products call BLAS (set per process by rnn.kernel_blas.blas_rows; 0 here)
        self.lay.dims = [ph.width for ph in plan.phases] + offsets[:nstate] + [0]
        self.writers = {}
        for ph in plan.phases:
            for a in ph.reads:
                if not engine_value(self.nodes[a]):
                    self.writers.setdefault(a, []).append(ph.index)
        self.lay.first_writer = {a: max(ps) for a, ps in self.writers.items()}

    # --- names of arrays and of their elements ---------------------------------------
    def array(self, name, what, key, shape, backward_only=False):
        if name not in self.lay.arrays:
            self.lay.arrays[name] = (what, key, shape)
            if not backward_only:
                self.lay.forward_args.append(name)
            self.lay.backward_args.append(name)
        return name

    def value_ref(self, a, col):
        """Where a phase reads input `a` (anything not computed in the phase) at column `col`."""
        n = self.nodes[a]
        if n.kind == "x":
            return f"{self.array('xs', 'x', a, ('T', 'B', n.width))}[t, b, {col}]"
        if n.kind == "state":
            _, name = self.state_of_in[a]
            return f"{self.storage_of_state(name)}[t, b, {col}]"
        if n.kind == "hoist":
            return f"{self.array('XA_' + ident(a), 'hoist', a, ('T', 'B', n.width))}[t, b, {col}]"
        if n.kind == "rec":
            return f"{self.array('A_' + ident(a), 'rec', a, ('T', 'B', n.width))}[t, b, {col}]"
        if n.kind == "ew":
            return self.stored_ref(a, col)
        kind = self.access[a]
        arr = self.array("P_" + ident(a), "engine", a, n.shape)
        return f"{arr}[0]" if kind == "scalar" else f"{arr}[b, {col}]" if kind == "mat" else f"{arr}[{col}]"

    def storage_of_state(self, name):
        sout = next(s for nm, _, s in self.plan.states if nm == name)
        return self.array("S_" + self.sname[name], "state", name, ("T+1", "B", self.nodes[sout].width))

    def stored_ref(self, nid, col):
        where = self.plan.stored[nid]
        if nid in self.state_of_out:
            return f"{self.storage_of_state(self.state_of_out[nid][1])}[t + 1, b, {col}]"
        return f"{self.array(where, 'stored', nid, ('T', 'B', self.nodes[nid].width))}[t, b, {col}]"

    def grad_ref(self, a, col):
        """Where the gradient of phase input `a` goes."""
        n = self.nodes[a]
        if n.kind == "state":
            _, name = self.state_of_in[a]
            arr = self.array("ES_" + self.sname[name], "grad_state_ew", name, ("2", "B", n.width), True)
            return f"{arr}[p, b, {col}]"
        if n.kind == "ew":
            return f"{self.array('EV_' + ident(a), 'grad_cross', a, ('B', n.width), True)}[b, {col}]"
        if n.kind in ("x", "hoist", "rec"):
            arr = self.array(self.grad_name(a), "grad_" + n.kind, a, ("T", "B", n.width), True)
            return f"{arr}[t, b, {col}]"
        kind = self.access[a]
        arr = self.array(self.grad_name(a), "grad_engine", a, n.shape, True)
        return f"{arr}[0]" if kind == "scalar" else f"{arr}[b, {col}]" if kind == "mat" else f"{arr}[{col}]"

    def grad_name(self, a):
        """The name of the gradient array of input `a`: a step input, a product or an engine value."""
        kind = self.nodes[a].kind
        return "dxs" if kind == "x" else {"hoist": "dXA_", "rec": "dA_"}.get(kind, "dP_") + ident(a)

    def shareable(self, a, ph, blocks, terms, copies, whole):
        """A key equal for two inputs whose gradient arrays would hold the same numbers, else None.

        LSTM: x W_ih + b_ih + h W_hh + b_hh: the gradient of the hoisted product equals that of the
        recurrent one, and b_ih's that of b_hh.  Not storing the second copy took 15% off the LSTM
        float32 backward kernel at (100, 64, 256, 256).  Only arrays this phase alone writes, and
        writes whole (`whole`: assigned, or an engine value's sum over the loop), qualify; equal
        expressions over the same variables are equal values, so the key is the canonical text."""
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
        """Buffer np.dot writes the left operand's gradient of the product using `v` into."""
        n = self.nodes[v]
        if n.kind == "state":
            name = self.state_of_in[v][1]
            return self.array("MS_" + self.sname[name], "grad_state_mm", name, ("2", "B", n.width), True), True
        return self.array("MV_" + ident(v), "grad_left", v, ("B", n.width), True), False

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
        return [(a, 0 if engine_value(self.nodes[a]) and self.access[a] == "scalar" else k) for a in n.args]

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
        name = f" ({n.label})" if n.label and n.label != n.op else ""
        role = ""
        if n.id in self.state_of_out:
            role = f"  -> new state {self.state_of_out[n.id][1]}"
        return f"# {n.id}{name} = {n.op}({', '.join(n.args)}){role}"

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
        lines = [f"# phase {ph.index}: element-wise ops fused over (batch, {self.wname})",
                 "for b in range(B):", f"    for j in range({self.wname}):"]
        return lines + ["        " + s for s in head + body]

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
            if nid in self.plan.stored and self.plan.stored[nid][0] in "SV":
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
                    body.append(f"{g} = {' + '.join(terms)}  # d/d {nid}" + (f" ({n.label})" if n.label != n.op else ""))
                    if len(terms) == 1:
                        copies[g] = copies.get(terms[0], terms[0])
                    if nid in self.state_of_out:
                        i, name = self.state_of_out[nid]
                        ds = self.array("DS_" + self.sname[name], "grad_states", name, ("T", "B", n.width), True)
                        body.append(f"{ds}[t, b, {self.col(k)}] = {g}")
                for (a, ak), term in zip(self.arg_blocks(n, k), self.partials(n, k, g)):
                    if term is not None and self.nodes[a].grad:
                        contrib.setdefault((a, ak), []).append(term)
        body.append("# gradients of this phase's inputs")
        pending = []
        for a, blocks in ph.reads.items():
            node = self.nodes[a]
            if not node.grad:
                continue
            engine = engine_value(node)
            if not engine:
                assign = self.lay.first_writer[a] == ph.index
                blocks = range(node.width // self.W)
            terms = [contrib.pop((a, k), []) for k in blocks]
            pending.append((engine, a, blocks, terms, engine or assign))
        assert not contrib, contrib
        written = {}  # (kind of array, what is written per block) -> input whose array holds it
        sums = []     # (bias, step array): the bias's gradient is the step array summed over the batch
        for engine, a, blocks, terms, whole in sorted(pending, key=lambda p: p[0]):  # engine values last
            key = self.shareable(a, ph, blocks, terms, copies, whole)
            if key in written:  # equal to an array written already: let the runtime pass that one
                self.lay.same[self.grad_name(a)] = self.grad_name(written[key])
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
        # A bias's gradient accumulated inside the fused loop (+= per batch row) made the LSTM
        # backward 25% slower at B = 1 and 6-12% at B = 8..64; summed here from the array the
        # loop wrote anyway, it costs a plain vectorised pass over this step's rows.
        for a, step, nb in sums:
            out += [f"for b in range(B):  # d {a} = sum over the batch of d {step}",
                    f"    for j in range({nb} * {self.wname}):",
                    f"        {self.grad_ref(a, 'j')} += {self.grad_ref(step, 'j')}"]
        return out

    def sources(self, nid, col):
        terms = []
        if nid in self.state_of_out:
            i, name = self.state_of_out[nid]
            terms.append(f"G[t, b, g{i} + {col}]")
            sin = self.plan.states[i][1]
            if sin in self.writers:
                terms.append(f"{self.grad_ref(sin, col).replace('[p,', '[q,')}")
            if sin in self.plan.rec_left:
                terms.append(f"{self.rec_left_grad(sin)[0]}[q, b, {col}]")
        if nid in self.plan.cross:
            terms.append(self.grad_ref(nid, col))
        if nid in self.plan.rec_left:
            terms.append(f"{self.rec_left_grad(nid)[0]}[b, {col}]")
        return terms

    def partials(self, n, k, g):
        """The term each argument's gradient receives from g = dL/d(n, k): the primitive's partials."""
        if n.op in ALIAS:
            return [g]
        args = self.arg_blocks(n, k)
        vals = [self.var(*self.resolve(*a)) for a in args]
        return list(PRIMITIVES[n.op].partial_forms(g, self.var(n.id, k), vals, n.attrs, self.const))

    # --- whole kernels ----------------------------------------------------------------
    def products_forward(self, ph):
        out = []
        for r in ph.matmuls:
            n = self.nodes[r]
            left = n.args[0]
            lref = (self.storage_of_state(self.state_of_in[left][1]) + "[t]" if left in self.state_of_in
                    else self.stored_ref(left, "0").split("[")[0] + ("[t + 1]" if left in self.state_of_out else "[t]"))
            w = self.array("W_" + ident(r), "rec_weight", r, self.nodes[n.args[1]].shape)
            a = self.array("A_" + ident(r), "rec", r, ("T", "B", n.width))
            out.append(f"_matmul({lref}, {w}, {a}[t], blas_rows)  # {r} = {left} @ {n.args[1]}")
        return out

    def products_backward(self, ph):
        out = []
        for r in ph.matmuls:
            n = self.nodes[r]
            buf, parity = self.rec_left_grad(n.args[0])
            da = self.array(self.grad_name(r), "grad_rec", r, ("T", "B", n.width), True)
            wt = self.array("WT_" + ident(r), "rec_weight_t", r, self.nodes[n.args[1]].shape[::-1], True)
            out.append(f"_matmul({da}[t], {wt}, {buf}{'[p]' if parity else ''}, blas_rows)  # d {n.args[0]} from {r}")
        return out

    def generate(self):
        fwd, bwd = [], []
        for ph in self.plan.phases:
            fwd += self.products_forward(ph)
            if ph.nodes:
                fwd += self.phase_forward(ph)
        for ph in reversed(self.plan.phases):
            if ph.nodes:
                bwd += self.phase_backward(ph)
            bwd += self.products_backward(ph)
        self.array("G", "grad_out", None, ("T", "B", None), True)
        self.lay.consts = [0.0, 1.0] + list(self.consts)
        prelude = ["zero = K[0]", "one = K[1]"]
        prelude += [f"e{i} = K[{i}]" for i in self.consts.values()]
        prelude += [f"W{ph.index} = dims[{ph.index}]" for ph in self.plan.phases if ph.nodes]
        prelude += [f"blas_rows = dims[{len(self.lay.dims) - 1}]"]
        gl = [f"g{i} = dims[{len(self.plan.phases) + i}]" for i in range(len(self.plan.states))]
        fargs = ", ".join(["T", "B", "dims", "K"] + self.lay.forward_args)
        bargs = ", ".join(["T", "B", "dims", "K"] + self.lay.backward_args)
        helpers = (FAST_F32 if self.plan.dtype == "float32" and FAST_FLOAT32 else
                   FAST_F64 if self.plan.dtype == "float64" and FAST_FLOAT64 else EXACT)
        src = [HEADER.format(cell=self.plan_cell(), version=GENERATOR_VERSION, llvm=" ".join(LLVM_OPTIONS)) + helpers + MATMUL, "", "@jit", f"def forward({fargs}):"]
        src += ["    " + s for s in prelude] + ["    for t in range(T):"] + ["        " + s for s in fwd]
        src += ["", "", "@jit", f"def backward({bargs}):"]
        src += ["    " + s for s in prelude + gl] + ["    for t in range(T - 1, -1, -1):",
                                                    "        p = t & 1  # this step's state-input gradients",
                                                    "        q = 1 - p  # the next step's, read as sources"]
        src += ["        " + s for s in bwd]
        return "\n".join(src) + "\n", self.lay

    def plan_cell(self):
        return self.plan.cell


# Part of every kernel's text, so of the hash that names its file: a new generator never
# reads a file an older one wrote.  Bump it when the generated code changes meaning.
GENERATOR_VERSION = 2

HEADER = '''"""Fused forward and BPTT kernels generated by rnn.codegen (version {version}) from the traced step of {cell}.

Generated code: the file name is the hash of this text, and a file whose bytes differ is written again.
Compiled with these LLVM options (set by rnn.kernel_cache; named here so that changing
them changes the hash and Numba's on-disk cache is not reused across them):
    {llvm}
"""
import math

import numpy as np
from numba import njit

# "contract": a * b + c may become one fused multiply-add (one rounding instead of two, so
# never less accurate); the products' inner loops and the gate math run on fma instructions.
jit = njit(cache=True, error_model="numpy", fastmath={{"contract"}})
'''


EXACT = """

@jit
def _tanh(a, one):
    return math.tanh(a)


@jit
def _sigmoid(a, one):
    # the engine's form: exp of a non-positive number never overflows
    e = math.exp(-abs(a))
    s = one / (one + e)
    return s if a >= 0 else e * s
"""

# float32 only: libm's scalar tanh/exp stop LLVM from vectorising the fused loop and
# dominate its time.  This rational approximation (Eigen's fast float tanh) is within a
# few float32 ulps and has no branch or call; sigmoid(a) = (1 + tanh(a/2)) / 2.
FAST_F32 = """

@jit
def _tanh(a, one):
    x = min(max(a, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@jit
def _sigmoid(a, one):
    half = np.float32(0.5)
    return half + half * _tanh(half * a, one)
"""

# float64: math.tanh/math.exp are libm calls, which keep the fused loops scalar.  These
# call-free forms vectorise and stay within ~5e-16 relative of libm (subnormal results
# included), far inside the 1e-10 agreement with the graph backend.
FAST_F64 = """

# exp(y) = 2**n * exp(r), y = n ln2 + r, |r| <= ln2/2: ln2 in two parts (Cody-Waite) keeps r
# exact to double precision; exp(r) - 1 is a degree-13 Taylor polynomial (truncation
# below 2e-17 relative); 2**n is built from its bits as 2**(n + 64) * 2**-64, so that
# n down to -1075 (subnormal results) stays exact.  Measured on a loop of sigmoids (AVX-512
# EPYC): 1.53 ns per element with 2**n from a table (a gather per vector) and Horner's
# order, 1.05 with the bits, 0.87 with Estrin's order too.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 to 32 bits: n * _LN2_HI is exact (fdlibm's split)
_LN2_LO = 1.9082149292705877e-10


@jit
def _expm1_parts(y):
    # y <= 0: (2**n, exp(r) - 1) with exp(y) = 2**n * (1 + (exp(r) - 1)); no libm call, so
    # loops using it vectorise
    y = max(y, -745.0)
    n = math.floor(y * _INV_LN2 + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO
    # p = sum of r**k / (k + 1)! for k = 0..12 in Estrin's order: a dependency chain of 4 fmas,
    # where Horner's had 12
    r2 = r * r
    r4 = r2 * r2
    q0 = 1.0 + r * 0.5
    q1 = 1.0 / 6.0 + r * (1.0 / 24.0)
    q2 = 1.0 / 120.0 + r * (1.0 / 720.0)
    q3 = 1.0 / 5040.0 + r * (1.0 / 40320.0)
    q4 = 1.0 / 362880.0 + r * (1.0 / 3628800.0)
    q5 = 1.0 / 39916800.0 + r * (1.0 / 479001600.0)
    p = (q0 + r2 * q1) + r4 * ((q2 + r2 * q3) + r4 * ((q4 + r2 * q5) + r4 * (1.0 / 6227020800.0)))
    scale = np.int64((n + 1087) << 52).view(np.float64) * 5.421010862427522e-20  # * 2**-64
    return scale, r * p


@jit
def _tanh(a, one):
    # tanh|a| = -m / (m + 2) with m = exp(-2|a|) - 1: no cancellation near 0
    s, q = _expm1_parts(-2.0 * abs(a))
    m = s * q + (s - 1.0)
    t = -m / (m + 2.0)
    return t if a >= 0 else -t


@jit
def _sigmoid(a, one):
    # the engine's form: exp of a non-positive number never overflows
    s, q = _expm1_parts(-abs(a))
    e = s + s * q
    r = one / (one + e)
    return r if a >= 0 else e * r
"""


# The per-step recurrent products are small: (B, K) @ (K, N) with K, N a few hundred at most.
# Through a BLAS without small-matrix kernels each costs a call with its checks and packing:
# for LSTM (B, H) = (8, 64) an sgemm took 8 us per step, these loops 2.5 us (float64: 8.8 ->
# 5.4 us).  Two rows of the result share each pass over eight rows of W, so W (row-major, the
# output axis contiguous and innermost, where LLVM vectorises with fma) is streamed once per
# two batch rows; the eight products are summed as a tree, so four fma chains run side by
# side instead of one chain through out[n] (LSTM H = 32, B = 1: -12% forward, -20% backward).  BLAS takes over from `blas_rows` batch rows on (rnn.kernel_blas.blas_rows
# picks it for the BLAS loaded), and past K * N = 65536 (LSTM H > 128), where W no longer
# fits in L2 and BLAS's blocking wins.
MATMUL = """

@jit
def _rows1(h, W, out):
    K = h.shape[0]
    N = W.shape[1]
    k8 = K - K % 8
    for n in range(N):
        out[n] = 0
    for k in range(0, k8, 8):
        a0, a1, a2, a3, a4, a5, a6, a7 = h[k], h[k + 1], h[k + 2], h[k + 3], h[k + 4], h[k + 5], h[k + 6], h[k + 7]
        w0, w1, w2, w3, w4, w5, w6, w7 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4], W[k + 5], W[k + 6], W[k + 7]
        for n in range(N):
            out[n] += ((a0 * w0[n] + a1 * w1[n]) + (a2 * w2[n] + a3 * w3[n])) + \\
                      ((a4 * w4[n] + a5 * w5[n]) + (a6 * w6[n] + a7 * w7[n]))
    for k in range(k8, K):
        a0 = h[k]
        w0 = W[k]
        for n in range(N):
            out[n] += a0 * w0[n]


@jit
def _rows2(ha, hb, W, oa, ob):
    K = ha.shape[0]
    N = W.shape[1]
    k8 = K - K % 8
    for n in range(N):
        oa[n] = 0
        ob[n] = 0
    for k in range(0, k8, 8):
        a0, a1, a2, a3, a4, a5, a6, a7 = ha[k], ha[k + 1], ha[k + 2], ha[k + 3], ha[k + 4], ha[k + 5], ha[k + 6], ha[k + 7]
        c0, c1, c2, c3, c4, c5, c6, c7 = hb[k], hb[k + 1], hb[k + 2], hb[k + 3], hb[k + 4], hb[k + 5], hb[k + 6], hb[k + 7]
        w0, w1, w2, w3, w4, w5, w6, w7 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4], W[k + 5], W[k + 6], W[k + 7]
        for n in range(N):
            x0, x1, x2, x3, x4, x5, x6, x7 = w0[n], w1[n], w2[n], w3[n], w4[n], w5[n], w6[n], w7[n]
            oa[n] += ((a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)) + ((a4 * x4 + a5 * x5) + (a6 * x6 + a7 * x7))
            ob[n] += ((c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3)) + ((c4 * x4 + c5 * x5) + (c6 * x6 + c7 * x7))
    for k in range(k8, K):
        a0 = ha[k]
        c0 = hb[k]
        w0 = W[k]
        for n in range(N):
            oa[n] += a0 * w0[n]
            ob[n] += c0 * w0[n]


@jit
def _matmul(h, W, out, blas_rows):
    # out = h @ W; h (B, K), W (K, N) and out (B, N) C-contiguous
    B, K = h.shape
    if B >= blas_rows or K * W.shape[1] > 65536:
        np.dot(h, W, out)
        return
    for b in range(0, B - 1, 2):
        _rows2(h[b], h[b + 1], W, out[b], out[b + 1])
    if B % 2:
        _rows1(h[B - 1], W, out[B - 1])
"""


def generate(plan):
    """(source, layout) of the kernels for `plan`."""
    return _Gen(plan).generate()
