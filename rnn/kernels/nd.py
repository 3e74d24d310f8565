"""Loop nests for a step's nd values: the values the fused (batch, width) loops cannot hold.

An nd value (see rnn.kernels.passes: over a source axis (S, B, A), N memory slots (B, N, W), a
(B, 1) gate times a (B, W) value; a sum, max, reshape, transpose or batched product of one) is
computed whole, per step, by a loop nest of its own over its shape — after its phase's products
and row values, before its fused loop — and stored at every step (an N_ array, (T, ...)).

Its gradient (a dN_ array of its shape) is summed by its readers: the fused loops, later nd values.
Its own reverse sweep, after the phase's fused loop, passes the gradient on — by the primitive's
partials (element-wise ops, broadcasting undone by summing into the broadcast element), to every
summed element (sum), to the elements holding the max (ties share it, as the engine's max does),
through the index map (reshape, transpose), or as the two products of a matmul's rule — and clears
it for the step before.  Sizes are read off the arrays' shapes, never written into the source, so
one source serves every source length and width; only which axes broadcast (size 1) is in the text.
"""
from __future__ import annotations

from minigrad.op import PRIMITIVES

from .ir import ND_OPS, engine_value, row_value, uses
from .statements import Loop, at, ident


def nest(indices, sizes, body):
    """`body` inside one loop per (index, size), the first outermost."""
    for i, size in reversed(list(zip(indices, sizes))):
        body = [Loop(f"for {i} in range({size})", body)]
    return body


def accumulating_nest(indices, sizes, body, sums):
    """nest(indices, sizes, body + each `target += term` of `sums` [(target, its indices, term)]),
    except that a target the innermost loop does not index — a broadcast operand's gradient, (S, B, 1)
    or (B, 1) — is summed in a variable across that loop and added once after it: through memory, each
    iteration would wait on the last one's store."""
    if not indices:
        return body + [f"{target} += {term}" for target, _, term in sums]
    inner, before, after = list(body), [], []
    for n, (target, idx, term) in enumerate(sums):
        if indices[-1] in idx:
            inner.append(f"{target} += {term}")
        else:
            before.append(f"acc{n} = zero")
            inner.append(f"acc{n} += {term}")
            after.append(f"{target} += acc{n}")
    loop = [Loop(f"for {indices[-1]} in range({sizes[-1]})", inner)]
    return nest(indices[:-1], sizes[:-1], before + loop + after)


def reduced_axes(attrs, ndim):
    axis = attrs.get("axis")
    if axis is None:
        return set(range(ndim))
    return {a % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))}


def _product(sizes):
    return " * ".join(sizes) if sizes else "1"


class NdEmitter:
    """The nd sections of rnn.kernels.emit's generator (a mixin: it uses the generator's arrays)."""

    # --- arrays and references --------------------------------------------------------------
    def nd_array(self, a):
        n = self.nodes[a]
        return self.array("nd", ident(a), a, ("T",) + (n.shape or (1,)), f"{self.names.say(a)}, per step")

    def nd_grad(self, a):
        n = self.nodes[a]
        return self.array("grad_nd", ident(a), a, n.shape or (1,), f"dL/d({self.names.say(a)}) within a step", True)

    def _by_rows(self, n):
        """Whether a loop-made value is laid out (batch, width) (else a per-step (W,), kept in every row)."""
        return len(n.shape) == 2 and n.shape[0] == self.batch

    def _engine_at(self, array, a, idx):
        kind = self.access[a]
        if kind == "scalar":
            return at(array, "0")
        if kind == "vec":
            return at(array, idx[-1])
        return at(array, *(idx[-2:] if kind == "mat" else idx or ["0"]))

    def nd_ref(self, a, idx):
        """Input `a` at the indices `idx` of its own shape, in step t."""
        n = self.nodes[a]
        if n.kind == "step":
            return "tval"
        if n.kind == "nd":
            return at(self.nd_array(a), "t", *(idx or ["0"]))
        if row_value(n):
            return at(self.row_array(a), "t", idx[0] if self._by_rows(n) else "0")
        if engine_value(n):
            return self._engine_at(self.array("engine", ident(a), a, n.shape, self.names.arg(a)), a, idx)
        array, row = self.step_array(a)
        return at(array, row, *(idx if self._by_rows(n) else ["0", idx[-1]]))

    def nd_grad_ref(self, a, idx):
        """Where the gradient of input `a` at `idx` is summed."""
        n = self.nodes[a]
        if n.kind == "nd":
            return at(self.nd_grad(a), *(idx or ["0"]))
        if row_value(n):
            return at(self.row_grad(a), "t", idx[0] if self._by_rows(n) else "0")
        if engine_value(n):
            return self._engine_at(self.grad_array(a), a, idx)
        return self.grad_ref(a, idx[-1], row=idx[0] if self._by_rows(n) else "0")

    def nd_size(self, a, m):
        """The size of axis m of `a` as the source reads it (off an array's shape; 1 where it is 1)."""
        n = self.nodes[a]
        if n.shape[m] == 1:
            return "1"
        if n.kind == "nd":
            return f"{self.nd_array(a)}.shape[{m + 1}]"
        if engine_value(n):
            array = self.array("engine", ident(a), a, n.shape, self.names.arg(a))
            kind = self.access[a]
            return f"{array}.shape[{0 if kind == 'vec' else m - (len(n.shape) - 2) if kind == 'mat' else m}]"
        if row_value(n):
            return f"{self.row_array(a)}.shape[1]"
        array, _ = self.step_array(a)
        return f"{array}.shape[{m + 1 if self._by_rows(n) else 2}]"

    @staticmethod
    def broadcast(arg_shape, out_idx):
        """The indices of an operand of `arg_shape` at output indices `out_idx` (aligned at the right)."""
        off = len(out_idx) - len(arg_shape)
        return ["0" if s == 1 else out_idx[m + off] for m, s in enumerate(arg_shape)]

    # --- the index maps of each op ----------------------------------------------------------
    def _into(self, n, idx):
        """The indices of reduction n's output that its operand's element at `idx` adds into."""
        axes, keep = reduced_axes(n.attrs, len(idx)), n.attrs.get("keepdims", False)
        return [("0" if m in axes else i) for m, i in enumerate(idx) if keep or m not in axes]

    def _reduction(self, n):
        """(operand indices, their sizes, the output indices they add into)."""
        a = n.args[0]
        k = [f"k{m}" for m in range(len(self.nodes[a].shape))]
        return k, [self.nd_size(a, m) for m in range(len(k))], self._into(n, k)

    def _source_index(self, n, o, sizes):
        """(statements, the operand's indices) read at output indices `o` by a reshape or transpose."""
        a = n.args[0]
        shape = self.nodes[a].shape
        if n.op == "transpose":
            axes = n.attrs.get("axes") or tuple(reversed(range(len(shape))))
            src = [None] * len(shape)
            for m, ax in enumerate(axes):
                src[ax % len(shape)] = o[m]
            return [], src
        flat = o[0] if o else "0"
        for m in range(1, len(o)):
            flat = f"({flat}) * {sizes[m]} + {o[m]}"
        asizes = [self.nd_size(a, m) for m in range(len(shape))]
        return [f"flat = {flat}"], [f"(flat // ({_product(asizes[m + 1:])})) % {asizes[m]}" for m in range(len(shape))]

    def _matmul_index(self, n, o):
        a, b = (self.nodes[x].shape for x in n.args)
        L = len(n.shape)
        ai = self.broadcast(a[:-2], o[:L - 2]) + [o[L - 2], "kk"]
        bi = self.broadcast(b[:-2], o[:L - 2]) + ["kk", o[L - 1]]
        return ai, bi, self.nd_size(n.args[0], len(a) - 1)

    # --- forward and backward -------------------------------------------------------------------
    def groups(self, ph):
        """The phase's nd values in order, each run of element-wise ones of one shape grouped: one loop
        nest per run, values passed between its ops in variables and stored only where something
        else reads them (see _kept).  A sum that closes the run joins it when it keeps the last axis
        (attention's Σ_s α(s) e(s)); over the last axis its accumulation would keep LLVM from
        vectorising the run's arithmetic, so its forward runs after the run (its operand stored),
        while its backward still joins the run's."""
        out = []
        for r in ph.nds:
            n = self.nodes[r]
            last = self.nodes[out[-1][-1]] if out else None
            if last is not None and last.op not in ND_OPS and (
                    (n.op not in ND_OPS and last.shape == n.shape) or (n.op == "sum" and n.args[0] in out[-1])):
                out[-1].append(r)
            else:
                out.append([r])
        return out

    def _last_axis_closing(self, group):
        n = self.nodes[group[-1]]
        ndim = len(self.nodes[group[0]].shape)
        return n.op == "sum" and len(group) > 1 and (ndim == 0 or ndim - 1 in reduced_axes(n.attrs, ndim))

    def _closing(self, group, o):
        """(the sum closing the run or None, the indices of its output the element at `o` adds into)."""
        n = self.nodes[group[-1]]
        if n.op != "sum" or len(group) == 1:
            return None, None
        return group[-1], self._into(n, o)

    def _kept(self, group):
        """The members of a run whose values go to memory: those read outside the run (a reduction, a
        later loop, a fused loop) and those a derivative reads (tanh's output, a product's operands)."""
        inside, kept = set(group), set()
        for r in group:
            if self.nodes[r].op == "sum":  # the closing sum: read by others
                kept.add(r)
                if self._last_axis_closing(group):  # its own loop reads its operand
                    kept.add(self.nodes[r].args[0])
                continue
            if uses(self.nodes[r])[0] or any(u not in inside for u in self.users[r]):
                kept.add(r)
            for u in self.users[r]:
                if u in inside and self.nodes[u].op != "sum" and any(
                        a == r and used for a, used in zip(self.nodes[u].args, uses(self.nodes[u])[1])):
                    kept.add(r)
        return kept

    def _sizes(self, group):
        """The run's loop sizes, read off an operand that spans each axis (its members may not be stored)."""
        shape = self.nodes[group[0]].shape
        sizes = []
        for k, size in enumerate(shape):
            got = "1" if size == 1 else None
            for r in group:
                for a in self.nodes[r].args if self.nodes[r].op != "sum" else ():
                    ashape = self.nodes[a].shape
                    off = len(shape) - len(ashape)
                    if got is None and a not in group and k >= off and ashape[k - off] == size:
                        got = self.nd_size(a, k - off)
            sizes.append(got or self.nd_size(group[0], k))
        return sizes

    def _fused_forward(self, group):
        n = self.nodes[group[0]]
        o = [f"i{m}" for m in range(len(n.shape))]
        kept, body, (tail, into) = self._kept(group), [], self._closing(group, o)
        out = [f"# {len(group)} ops over one shape, whole"]
        members, after = group[:-1] if tail else group, []
        if tail and self._last_axis_closing(group):
            after, tail = self._single_forward(tail), None
        if tail:
            t = self.nodes[tail]
            ti = [f"i{m}" for m in range(len(t.shape))]
            out += nest(ti, [self.nd_size(tail, m) for m in range(len(t.shape))],
                        [f"{at(self.nd_array(tail), 't', *(ti or ['0']))} = zero"])
        for r in members:
            m = self.nodes[r]
            body.append(f"# {self.names.line(r)}  [{r}]")
            vals = [f"v_{ident(a)}" if a in group else self.nd_ref(a, self.broadcast(self.nodes[a].shape, o))
                    for a in m.args]
            body.append(f"v_{ident(r)} = {PRIMITIVES[m.op].scalar_form(vals, m.attrs, self.const)}")
            if r in kept:
                body.append(f"{at(self.nd_array(r), 't', *(o or ['0']))} = v_{ident(r)}")
        if tail:
            body += [f"# {self.names.line(tail)}  [{tail}]",
                     f"{at(self.nd_array(tail), 't', *(into or ['0']))} += v_{ident(self.nodes[tail].args[0])}"]
        return out + nest(o, self._sizes(group), body) + after

    def _fused_backward(self, group):
        n = self.nodes[group[0]]
        o = [f"i{m}" for m in range(len(n.shape))]
        kept, inside, (tail, into) = self._kept(group), set(group), self._closing(group, o)
        body, inner, sums = [], {}, []   # inner: member -> its gradient terms from later members
        if tail and self.nodes[tail].grad:
            inner[self.nodes[tail].args[0]] = [at(self.nd_grad(tail), *(into or ["0"]))]
        for r in reversed(group[:-1] if tail else group):
            m = self.nodes[r]
            terms_in = inner.pop(r, [])
            outside = any(u not in inside for u in self.users[r])
            if not m.grad or not (terms_in or outside):
                continue
            g = f"g_{ident(r)}"
            body.append(f"# d {self.names.line(r)}  [{r}]")
            if outside:
                G = at(self.nd_grad(r), *(o or ["0"]))
                body += [f"{g} = {' + '.join([G] + terms_in)}", f"{G} = zero"]
            else:
                body.append(f"{g} = {' + '.join(terms_in)}")
            idx = [self.broadcast(self.nodes[a].shape, o) for a in m.args]
            vals = [self.nd_ref(a, i) if a not in inside or a in kept else f"v_{ident(a)}"
                    for a, i in zip(m.args, idx)]
            here = at(self.nd_array(r), "t", *(o or ["0"])) if r in kept else f"v_{ident(r)}"
            terms = PRIMITIVES[m.op].partial_forms(g, here, vals, m.attrs, self.const)
            for a, i, term in zip(m.args, idx, terms):
                if term is None or not self.nodes[a].grad:
                    continue
                if a in inside:
                    inner.setdefault(a, []).append(f"({term})")
                else:
                    sums.append((self.nd_grad_ref(a, i), i, term))
        out = [f"# d of {len(group)} ops over one shape, whole"] + accumulating_nest(o, self._sizes(group), body, sums)
        if tail and self.nodes[tail].grad:  # read at many elements: cleared after the run
            t = self.nodes[tail]
            ti = [f"i{m}" for m in range(len(t.shape))]
            out += nest(ti, [self.nd_size(tail, m) for m in range(len(t.shape))],
                        [f"{at(self.nd_grad(tail), *(ti or ['0']))} = zero"])
        return out

    def nds_forward(self, ph):
        out = []
        for group in self.groups(ph):
            out += self._fused_forward(group) if len(group) > 1 else self._single_forward(group[0])
        return out

    def _single_forward(self, r):
        out = []
        n, N = self.nodes[r], self.nd_array(r)
        o = [f"i{m}" for m in range(len(n.shape))]
        sizes = [self.nd_size(r, m) for m in range(len(n.shape))]
        here = at(N, "t", *(o or ["0"]))
        out.append(f"# {self.names.line(r)}  [{r}], whole")
        if n.op in ("sum", "max"):
            k, ksizes, into = self._reduction(n)
            there = at(N, "t", *(into or ["0"]))
            start = "zero" if n.op == "sum" else self.const(float("-inf"))
            out += nest(o, sizes, [f"{here} = {start}"])
            v = self.nd_ref(n.args[0], k)
            step = [f"acc += {v}"] if n.op == "sum" else [  # NaN wins, as in np.max
                f"x = {v}", "if x > acc or x != x:", "    acc = x"]
            if k and k[-1] not in into and n.op == "sum":
                # the last axis summed in four variables, four elements at a time: one sum's additions
                # wait on each other (4 cycles each); four independent ones overlap
                last, size = k[-1], ksizes[-1]
                quad = [f"acc{q} += {self.nd_ref(n.args[0], k[:-1] + [f'{last} + {q}'])}" for q in range(4)]
                out += nest(k[:-1], ksizes[:-1], [
                    "acc0 = zero", "acc1 = zero", "acc2 = zero", "acc3 = zero",
                    Loop(f"for {last} in range(0, {size} - 3, 4)", quad),
                    Loop(f"for {last} in range({size} - {size} % 4, {size})", [f"acc0 += {v}"]),
                    f"{there} = {there} + ((acc0 + acc1) + (acc2 + acc3))"])
            elif k and k[-1] not in into:  # the last axis's max in a variable, not through memory
                out += nest(k[:-1], ksizes[:-1], [f"acc = {there}", Loop(f"for {k[-1]} in range({ksizes[-1]})", step),
                                                  f"{there} = acc"])
            else:
                out += nest(k, ksizes, [f"acc = {there}"] + step + [f"{there} = acc"])
        elif n.op in ("reshape", "transpose"):
            first, src = self._source_index(n, o, sizes)
            out += nest(o, sizes, first + [f"{here} = {self.nd_ref(n.args[0], src)}"])
        elif n.op == "matmul":
            ai, bi, K = self._matmul_index(n, o)
            out += nest(o, sizes, ["acc = zero", Loop(f"for kk in range({K})", [
                f"acc += {self.nd_ref(n.args[0], ai)} * {self.nd_ref(n.args[1], bi)}"]), f"{here} = acc"])
        else:
            vals = [self.nd_ref(a, self.broadcast(self.nodes[a].shape, o)) for a in n.args]
            out += nest(o, sizes, [f"{here} = {PRIMITIVES[n.op].scalar_form(vals, n.attrs, self.const)}"])
        return out

    def nds_backward(self, ph):
        out, self.prezeroed = [], set()
        if not ph.nodes:  # no fused loop assigned these gradients this step: the first writer zeroes them
            for a in dict.fromkeys(a for r in ph.nds for a in self.nodes[r].args):
                n = self.nodes[a]
                if n.kind in ("x", "state", "hoist", "rec", "ew") and n.grad and \
                        self.lay.first_writer.get(a) == ph.index:
                    array = self.grad_ref(a, "0").partition("[")[0]
                    out.append(f"{array}[{'p' if n.kind == 'state' else 't' if n.kind != 'ew' else ':'}] = zero")
                    self.prezeroed.add(a)
        for group in reversed(self.groups(ph)):
            if len(group) > 1:
                out += self._fused_backward(group)
                continue
            r = group[0]
            n = self.nodes[r]
            if not n.grad:
                continue
            G, N = self.nd_grad(r), self.nd_array(r)
            o = [f"i{m}" for m in range(len(n.shape))]
            sizes = [self.nd_size(r, m) for m in range(len(n.shape))]
            here, g = at(G, *(o or ["0"])), "gv"
            take = [f"{g} = {here}", f"{here} = zero"]  # read, and cleared for the step before
            out.append(f"# d {self.names.line(r)}  [{r}], whole")
            learns = [self.nodes[a].grad for a in n.args]
            if n.op in ("sum", "max"):
                a = n.args[0]
                k, ksizes, into = self._reduction(n)
                there, target = at(G, *(into or ["0"])), self.nd_grad_ref(a, k)
                if n.op == "sum":
                    out += nest(k, ksizes, [f"{target} += {there}"])
                else:
                    cnt = f"cnt_{ident(r)}"
                    hit = f"if {self.nd_ref(a, k)} == {at(N, 't', *(into or ['0']))}:"
                    out.append(f"{cnt} = np.zeros_like({G})")
                    out += nest(k, ksizes, [hit, f"    {at(cnt, *(into or ['0']))} += one"])
                    out += nest(k, ksizes, [hit, f"    {target} += {there} / {at(cnt, *(into or ['0']))}"])
                out += nest(o, sizes, [f"{here} = zero"])
            elif n.op in ("reshape", "transpose"):
                first, src = self._source_index(n, o, sizes)
                out += nest(o, sizes, take + first + [f"{self.nd_grad_ref(n.args[0], src)} += {g}"])
            elif n.op == "matmul":
                (a, b), (ai, bi, K) = n.args, self._matmul_index(n, o)
                inner = ([f"{self.nd_grad_ref(a, ai)} += {g} * {self.nd_ref(b, bi)}"] if learns[0] else []) + \
                        ([f"{self.nd_grad_ref(b, bi)} += {self.nd_ref(a, ai)} * {g}"] if learns[1] else [])
                out += nest(o, sizes, take + [Loop(f"for kk in range({K})", inner)])
            else:
                idx = [self.broadcast(self.nodes[a].shape, o) for a in n.args]
                vals = [self.nd_ref(a, i) for a, i in zip(n.args, idx)]
                terms = PRIMITIVES[n.op].partial_forms(g, at(N, "t", *(o or ["0"])), vals, n.attrs, self.const)
                sums = [(self.nd_grad_ref(a, i), i, term)
                        for a, i, term, grad in zip(n.args, idx, terms, learns) if term is not None and grad]
                out += accumulating_nest(o, sizes, take, sums)
        return out
