"""A recurrent classifier's whole training step as one generated Numba function.

    step = TrainStep(cell, weight, bias, optimizer, clip=("norm", 5.0), embedding=None)
    loss, state, updated = step(ids, targets, state)     # ids, targets: (T, B) class indices

is roughly this, through the engine (what minigrad_cli's Trainer does when it cannot compile):

    xs = one_hot(ids, V)                   # (T, B, V); with an embedding E: E[ids], (T, B, width)
    result = rnn.run(cell, xs, state, backend="numba")
    loss = mg.linear_cross_entropy(result.outputs.reshape(T * B, H), weight, bias, targets.reshape(-1))
    for p in optimizer.params: p.grad = None
    loss.backward()
    norm = mg.clip_grad_norm_(optimizer.params, c, error_if_nonfinite=False)   # or grad_norm / value
    if isfinite(norm): optimizer.step()
    state = result.state, detached

but as one call: the cell's generated forward kernel, the read-out's softmax and loss, their gradient,
the generated BPTT kernel, the weight gradients (GEMMs; a one-hot input's a scatter, an embedding's
rows added back where the ids picked them), the joint norm, the clip and the optimizer's update of
every parameter (minigrad.fused's per-array form of it) — no Python and no engine op between them.
At the notes' char-RNN setting a step costs less than half the engine path's (docs/performance.md).
The numbers are the engine path's: the same kernels, loops and update arithmetic in the same order;
only the BLAS library of a product and of the norm's dots may differ (SciPy's here, NumPy's
there), in the last bits.

What it compiles: a cell the kernels compile (rnn.kernels) whose output o(t) is its first state;
float64 parameters, all learning; every optimizer parameter the cell's, the read-out's or the
embedding's, none shared between them.  Anything else raises UnsupportedCellError saying why, and
the caller runs the engine path.  Values a step computes from parameters alone (a leak's sigmoid,
slices of one stacked weight) are the engine's, as in rnn.run: computed by engine ops each call and
read by the generated code as v0, v1, ...; their gradients dv0, ... go back through the engine to
the parameters between the two generated functions, train_grads and train_update, which are
otherwise one call, train_step.

A step whose gradient norm is not finite changes nothing (updated False), as the engine path's
skip; one whose sum of squares is so small or large that the norm must be rescaled to be right
(minigrad.clip._l2) does its clipping and update through minigrad.clip and optimizer.step(),
which are exactly right there.  After a step every parameter's .grad is its (clipped)
gradient, in an array the next step overwrites.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from minigrad import Tensor, fused
from minigrad.clip import _TINY, clip_and_check
from minigrad.tensor import enable_grad, grad as mg_grad

from ..cell import Cell
from . import arrays as kinds, cache as kernel_cache
from .arrays import KINDS
from .binding import _engine_values, _param_transpose, _shape, engine_whole, prepare
from .emit import GENERATOR_VERSION, HELPERS_HASH, ident
from .ir import UnsupportedCellError

TRAINING_VERSION = 1
# minigrad.fused's loops are compiled into the generated step: their text is part of its hash
FUSED_HASH = hashlib.sha256(Path(fused.__file__).read_bytes()).hexdigest()[:16]
CLIPS = {None: 0, "norm": 1, "value": 2}
UPDATED, NOT_PLAIN, BAD_INDEX = 0, 1, 2  # what the generated step returns as its status
STATUS = "status 0 updated, 1 a sum of squares the plain norm cannot take (Python finishes), 2 a class index out of range"


class TrainStep:
    """One training step of ids -> cell -> linear read-out -> mean cross-entropy, compiled whole
    (see the module docstring).  Raises UnsupportedCellError when it cannot be."""

    def __init__(self, cell, weight, bias, optimizer, clip=None, embedding=None):
        kind, value = clip or (None, None)
        if kind not in CLIPS:
            raise ValueError(f"TrainStep: clip must be None, ('norm', c) or ('value', c), got {clip!r}")
        self.cell, self.weight, self.bias, self.opt, self.clip = cell, weight, bias, optimizer, clip
        self.clip_kind, self.clip_value = CLIPS[kind], float(value or 0.0)
        self.update = optimizer.fused_update
        if self.update is None:
            raise UnsupportedCellError(f"{type(optimizer).__name__} has no compiled update")
        if type(cell).output is not Cell.output:
            raise UnsupportedCellError(f"{type(cell).__name__}'s output o(t) is not its state")
        params = optimizer.params
        for label, p in zip(optimizer.labels, params):
            if p.dtype != np.float64 or not p.requires_grad:
                raise UnsupportedCellError(f"parameter {label} is {'frozen' if not p.requires_grad else p.dtype}: "
                                           "the compiled step updates float64 parameters that all learn")
        self.named = dict(cell.named_parameters())
        index = {id(p): k for k, p in enumerate(params)}
        self.cell_index = {name: index.get(id(p)) for name, p in self.named.items()}
        self.head_index = (index.get(id(weight)), index.get(id(bias)))
        if None in self.head_index or set(self.head_index) & set(self.cell_index.values()):
            raise UnsupportedCellError("the read-out's weight and bias must be the optimizer's and not the cell's")
        self.embedding = embedding
        self.embed_index = None if embedding is None else index.get(id(embedding))
        if embedding is not None and (self.embed_index is None or embedding.ndim != 2
                                      or self.embed_index in set(self.head_index) | set(self.cell_index.values())):
            raise UnsupportedCellError("the embedding must be a (classes, width) parameter of the optimizer's alone")
        if weight.ndim != 2 or bias.shape != weight.shape[:1]:
            raise UnsupportedCellError(f"the read-out must be weight (K, H) and bias (K,), got {weight.shape}, "
                                       f"{bias.shape}")
        self._built = {}  # (T, B) -> _Built

    def __call__(self, ids, targets, state=None):
        """(mean loss, the final state as arrays (one per state name), whether the parameters were updated).

        Raises UnsupportedCellError, having changed nothing, when a cell's parameter was replaced, or a
        parameter's array by one of another shape, dtype or layout, since the step was made."""
        ids, targets = np.asarray(ids), np.asarray(targets)
        if ids.ndim != 2 or targets.shape != ids.shape or ids.dtype.kind not in "iu" or targets.dtype.kind not in "iu":
            raise TypeError(f"TrainStep: ids and targets must be integer arrays of one shape (T, B), got "
                            f"{ids.dtype} {ids.shape} and {targets.dtype} {targets.shape}")
        T, B = ids.shape
        named = self.named
        if len(named) != sum(named.get(k) is p for k, p in self.cell.named_parameters()):
            raise UnsupportedCellError("TrainStep: the cell's parameters were replaced since the step was made "
                                       "(the optimizer updates the ones it was given)")
        prep = prepare(self.cell, B)  # the cell as it is now: a changed one is traced again
        built = self._built.get((T, B))
        if built is None or built.prep is not prep:
            if len(self._built) >= 8:
                self._built.clear()
            built = self._built[(T, B)] = _Built(self, prep, T, B)
        return built.run(ids, targets, state)


class _Built:
    """The generated step for one (cell as traced, T, B): its module and the arrays it works in."""

    def __init__(self, owner, prep, T, B):
        self.owner, self.prep, self.T, self.B = owner, prep, T, B
        source, self.args, self.pre = _source(owner, prep)
        module = kernel_cache.load(source)
        self.step_fn, self.grads_fn, self.update_fn = (getattr(module, f, None) for f in
                                                      ("train_step", "train_grads", "train_update"))
        opt, dtype = owner.opt, np.float64
        lay = prep.layout
        self.state_widths = [lay.arrays[kinds.name("state", prep.sname[n])][2][-1] for n in prep.snames]
        self.arrays = {}
        for name in self.args:
            what, key, spec = lay.arrays[name]
            if what == "grad_out":  # dL/d(all new states), side by side
                self.arrays[name] = np.zeros((T, B, sum(self.state_widths)), dtype)
            elif what == "engine":  # a constant (parameters are read where they are), as rnn.kernels.binding passes it
                value = np.array(prep.consts[key], dtype)
                self.arrays[name] = value if engine_whole(lay, name, value.shape) else value.reshape(-1)
            else:
                self.arrays[name] = np.zeros(_shape(spec, T, B), dtype)
        V, H = owner.weight.shape
        self.head = [np.zeros((T * B, V)), np.zeros((T * B, V)), np.zeros((T * B, H)), np.zeros(1)]  # P, dL, dX, total
        if owner.embedding is not None:  # x(t) for every step, and its gradient
            self.head += [np.zeros((T * B, owner.embedding.shape[1])) for _ in range(2)]
        self.grads = [np.zeros(p.shape) for p in opt.params]
        self.pre_grads = [np.zeros(prep.plan.nodes[nid].shape) for nid in self.pre]
        # the parameters the values computed from parameters alone read: their gradients come back through those
        plan = prep.plan
        reads = {a for nid in prep.pre for a in plan.nodes[nid].args if plan.nodes[a].kind == "param"}
        self.pre_params = [(owner.cell_index[plan.params[a]], a) for a in sorted(reads)]
        self.dims, self.consts = prep.dims, prep.kernel_consts(dtype)
        self.zero_state = [np.zeros((B, w)) for w in self.state_widths]

    def run(self, ids, targets, state):
        owner, opt, T, B = self.owner, self.owner.opt, self.T, self.B
        V = owner.weight.shape[0]
        states = self.zero_state if state is None else [
            np.ascontiguousarray(s._data if isinstance(s, Tensor) else s, np.float64)
            for s in (state if isinstance(state, (tuple, list)) else (state,))]
        if [s.shape for s in states] != [z.shape for z in self.zero_state]:
            raise ValueError(f"TrainStep: state must be {len(self.zero_state)} array(s) of shape "
                             f"{self.zero_state[0].shape}, got {[s.shape for s in states]}")
        params = [p._data for p in opt.params]
        for label, p, g in zip(opt.labels, params, self.grads):
            if p.shape != g.shape or p.dtype != np.float64 or not p.flags.c_contiguous or not p.flags.writeable:
                raise UnsupportedCellError(f"TrainStep: parameter {label}'s array is now {p.dtype} {p.shape}"
                                           f"{'' if p.flags.c_contiguous and p.flags.writeable else ', a view'}; "
                                           f"the step was built for a writable float64 {g.shape} array")
        steps = opt.steps + 1
        rows = {s: opt.fused_scalars(s) for s in set(steps.tolist())}  # one step count for all, as a rule
        hyper = np.array([rows[s] for s in steps.tolist()], dtype=np.float64)
        update = [*[opt.state[k][b] for k in range(len(params)) for b in opt._buffer_names()], hyper,
                  owner.clip_kind, owner.clip_value]
        ids, targets = np.ascontiguousarray(ids, np.intp), np.ascontiguousarray(targets, np.intp)
        a = self.arrays
        kernel = [a[n] for n in self.args]
        if not self.pre:  # the common case: one call
            loss, _, status = self.step_fn(T, B, self.dims, self.consts, ids, targets, *states, *params,
                                              *self.grads, *self.head, *kernel, *update)
        else:
            env = self._pre_values()
            values = [np.ascontiguousarray(env[nid]._data) for nid in self.pre]
            loss, status = self.grads_fn(T, B, self.dims, self.consts, ids, targets, *states, *params, *values,
                                         *self.grads, *self.pre_grads, *self.head, *kernel)
            if status != BAD_INDEX:
                self._pre_backward(env)
                _, status = self.update_fn(*params, *self.grads, *update)
        if status == BAD_INDEX:  # found before anything was computed
            raise ValueError(f"TrainStep: class indices must lie in [0, {V}), got ids in [{ids.min()}, {ids.max()}] "
                             f"and targets in [{targets.min()}, {targets.max()}]")
        for p, g in zip(opt.params, self.grads):
            p.grad = g
        if status == UPDATED:
            opt.steps[:] = steps
            for p in opt.params:
                p._version += 1  # changed in place, as `p.data -= ...` would have said
            updated = True
        else:
            updated = self._finish()
        final = [a[kinds.name("state", self.prep.sname[n])][T].copy() for n in self.prep.snames]
        return float(loss), final, updated

    def _pre_values(self):
        """The values the step computes from parameters alone (a gate's sigmoid of a parameter, a slice
        of one), by engine ops as rnn.run's binding computes them, recorded: their gradients go back
        through them (see _pre_backward).  No x(t): the step has no values of x(t) alone."""
        with enable_grad():
            return _engine_values(self.prep, self.owner.named, None)

    def _pre_backward(self, env):
        """Add the gradients that reach parameters through those values into the parameters' own."""
        outs = [(env[nid], g) for nid, g in zip(self.pre, self.pre_grads) if env[nid].requires_grad]
        if not outs or not self.pre_params:
            return
        got = mg_grad([t for t, _ in outs], [env[a] for _, a in self.pre_params], [g for _, g in outs])
        for (k, _), g in zip(self.pre_params, got):
            self.grads[k] += g._data

    def _finish(self):
        """The clip and update for a sum of squares outside the plain norm's range, through minigrad.clip
        and optimizer.step(): False, changing nothing, when the norm is not finite."""
        if not clip_and_check(self.owner.opt.params, self.owner.clip):
            return False
        self.owner.opt.step()
        return True


def _source(owner, prep):
    """(the generated module's source, the kernel arrays it takes after the fixed arguments, the values
    computed from parameters alone that it reads, in the order of its arguments v0, v1, ...)."""
    plan, lay = prep.plan, prep.layout
    opt = owner.opt
    n = len(opt.params)
    nbuf = len(opt._buffer_names())
    cell_index = owner.cell_index
    pname = plan.params  # plan node -> parameter name
    pre = []  # the values computed from parameters alone the kernels read: v{m} = pre[m], dv{m} its gradient

    def source(nid, fold=True):
        """(array, its gradient, folded): the parameter (or value computed from parameters alone) the
        kernels read as `nid` — folded: nid is the transpose of a parameter, read off the parameter."""
        node = plan.nodes[nid]
        if node.kind == "param":
            return f"p{cell_index[pname[nid]]}", f"g{cell_index[pname[nid]]}", False
        if fold and _param_transpose(plan, nid):
            k = cell_index[pname[node.args[0]]]
            return f"p{k}", f"g{k}", True
        if nid in prep.pre:
            if nid not in pre:
                pre.append(nid)
            return f"v{pre.index(nid)}", f"dv{pre.index(nid)}", False
        raise UnsupportedCellError(f"the kernels read a value ({node.op}) that is neither a parameter nor "
                                   "computed from parameters alone")

    if plan.xpre:
        raise UnsupportedCellError("the step computes values from x(t) alone before its loop")
    if any(i is None for name, i in cell_index.items() if any(plan.params[p] == name for p in plan.params)):
        raise UnsupportedCellError("a parameter the step reads is not the optimizer's")
    used = {cell_index[plan.params[p]] for p in plan.params if p in plan.nodes}
    ke = owner.embed_index  # x(t) = its rows picked by the ids; else x(t) = one-hot(ids)
    if used | set(owner.head_index) | ({ke} - {None}) != set(range(n)):
        raise UnsupportedCellError("an optimizer parameter is neither the step's nor the read-out's")
    classes = owner.weight.shape[0]
    if plan.nodes[plan.x].width != (classes if ke is None else owner.embedding.shape[1]):
        raise UnsupportedCellError(f"x(t) is {plan.nodes[plan.x].width} wide, not "
                                   + ("the classes" if ke is None else "the embedding"))

    args = [name for name in lay.arrays if name not in lay.same
            and not (lay.arrays[name][0] == "engine" and lay.arrays[name][1] not in prep.consts)]
    snames = prep.snames
    body, contrib = [], {}  # contrib: per gradient array (gK, dvM), code adding into it
    dx = []  # with an embedding: code adding into dL/dx(t), dXe (T*B, width)
    if ke is not None:
        body += ["idf = ids.reshape(T * B)", "for r in range(T * B):", "    for j in range(Xe.shape[1]):",
                 f"        Xe[r, j] = p{ke}[idf[r], j]"]

    for name, what, key in prep.inputs:
        if what == "x" and ke is not None:
            body.append(f"copy({_flat(name)}, {_flat('Xe')})")
            dx.append(f"add({_flat('dXe')}, {_flat(kinds.name('grad_x'))})")
        elif what == "x":
            body += [f"fill({_flat(name)}, 0.0)",
                     "for t in range(T):", "    for b in range(B):", f"        {name}[t, b, ids[t, b]] = 1.0"]
        elif what == "state":
            body.append(f"copy({_flat(name + '[0]')}, {_flat('s' + str(snames.index(key)))})")
        elif what == "hoist":
            left, right = plan.nodes[key].args
            if left != plan.x:
                raise UnsupportedCellError("a hoisted product's left operand is not x(t)")
            R, dR, folded = source(right)
            grad = kinds.name("grad_hoist", ident(key))
            grad = lay.same.get(grad, grad)
            if ke is not None:  # x(t) @ W for all t: one GEMM; its gradients two
                dA = f"{grad}.reshape(T * B, {grad}.shape[2])"
                body.append(f"np.dot(Xe, {R + '.T' if folded else R}, {name}.reshape(T * B, {name}.shape[2]))")
                contrib.setdefault(dR, []).append(("product", f"np.dot({dA}.T, Xe)" if folded else
                                                   f"np.dot(Xe.T, {dA})"))
                dx += [f"d = np.dot({dA}, {R})" if folded else f"d = np.dot({dA}, {R}.T)", f"add({_flat('dXe')}, {_flat('d')})"]
                continue
            pick = f"{R}[j, c]" if folded else f"{R}[c, j]"
            body += ["for t in range(T):", "    for b in range(B):", "        c = ids[t, b]",
                     f"        for j in range({name}.shape[2]):", f"            {name}[t, b, j] = {pick}"]
            add = f"{dR}[j, c] += {grad}[t, b, j]" if folded else f"{dR}[c, j] += {grad}[t, b, j]"
            contrib.setdefault(dR, []).append(("scatter", [
                "for t in range(T):", "    for b in range(B):", "        c = ids[t, b]",
                f"        for j in range({grad}.shape[2]):", f"            {add}"]))
        elif what in ("rec_weight", "rec_weight_t"):
            R, dR, folded = source(plan.nodes[key].args[1])
            transposed = folded == (what == "rec_weight")
            body += ([f"for i in range({name}.shape[0]):", f"    for j in range({name}.shape[1]):",
                      f"        {name}[i, j] = {R}[j, i]"] if transposed else [f"copy({_flat(name)}, {_flat(R)})"])
            if what == "rec_weight":
                arr, offset, grad = prep.weight_arrays[key]
                left = arr if offset is None else f"{arr}[{offset}:{offset} + T]"
                L, dA = f"{left}.reshape(T * B, -1)", f"{grad}.reshape(T * B, -1)"
                contrib.setdefault(dR, []).append(("product", f"np.dot({dA}.T, {L})" if folded else
                                                   f"np.dot({L}.T, {dA})"))
        elif what == "engine" and key not in prep.consts:
            R, dR, _ = source(key, fold=False)
            whole = engine_whole(lay, name, plan.nodes[key].shape)
            body.append(f"{name} = {R}" if whole else f"{name} = {R}.reshape({R}.size)")
            if plan.nodes[key].grad:
                grad = kinds.name("grad_engine", ident(key))
                contrib.setdefault(dR, []).append(("engine", lay.same.get(grad, grad)))
    for alias, same in lay.same.items():
        body.append(f"{alias} = {same}")

    first = kinds.name("state", prep.sname[snames[0]])
    width0 = lay.arrays[first][2][-1]
    kw, kb = owner.head_index
    body = ["for t in range(T):", "    for b in range(B):",
            f"        if not (0 <= ids[t, b] < {classes if ke is None else owner.embedding.shape[0]} "
            f"and 0 <= targets[t, b] < {classes}):",
            "            @BAD"] + body
    body += [f"forward(T, B, dims, K, {', '.join(lay.forward_args)})",
             "# the read-out and its mean cross-entropy; its gradient, the kernels' dL/d(states)",
             f"X = {first}[1:].reshape(T * B, {width0})",
             "y = targets.reshape(T * B)",
             f"linear_nll(X, p{kw}, p{kb}, y, P, total)",
             "factor = 1.0 / (T * B)",
             "loss = -(total[0] * factor)",
             f"linear_nll_grad(X, p{kw}, P, y, 1.0 * factor, dL, dX, g{kw}, g{kb})",
             f"fill({_flat('G')}, 0.0)",
             "for t in range(T):", "    for b in range(B):", f"        for j in range({width0}):",
             "            G[t, b, j] = dX[t * B + b, j]"]
    body += [f"fill({_flat(name)}, 0.0)" for name, (what, _, _) in lay.arrays.items()
             if KINDS[what].zeroed and KINDS[what].grad and name not in lay.same]
    body.append(f"backward(T, B, dims, K, {', '.join(lay.backward_args)})")
    body.append("# the gradients of the parameters and of the values computed from them, in their own layout")
    if ke is not None:  # the embedding's: dL/dx(t) added into the rows the ids picked
        body += [f"fill({_flat('dXe')}, 0.0)"] + dx + [f"fill({_flat(f'g{ke}')}, 0.0)", "for r in range(T * B):",
                                                       "    for j in range(dXe.shape[1]):",
                                                       f"        g{ke}[idf[r], j] += dXe[r, j]"]
    reached = set(contrib) | {f"g{kw}", f"g{kb}", f"g{ke}"}
    body += [f"fill({_flat(f'g{k}')}, 0.0)  # reached only through values computed from it" for k in sorted(used)
             if f"g{k}" not in reached]
    for g, parts in contrib.items():
        for i, (how, what) in enumerate(parts):
            if how == "scatter":
                body += ([f"fill({_flat(g)}, 0.0)"] if i == 0 else []) + what
            elif how == "product":
                body += [f"{what[:-1]}, {g})"] if i == 0 else [f"d = {what}", f"add({_flat(g)}, {_flat('d')})"]
            else:
                body.append(f"{'copy' if i == 0 else 'add'}({_flat(g)}, {_flat(what)})")
    body.append("@GRADS")

    flats = [f"g{k}.reshape(g{k}.size)" for k in range(n)]
    update = ["# the joint norm (minigrad.clip's plain sum of squares; outside its range, Python finishes)",
              "sq = 0.0"] + [f"sq += np.dot({g}, {g})" for g in flats]
    update += ["if not (TINY < sq < np.inf):", "    @NOT_PLAIN",
               "norm = math.sqrt(sq)",
               "if clip_kind == 1:", "    coef = clip / (norm + 1e-6)", "    if coef < 1.0:"]
    update += [f"        scale({g}, coef)" for g in flats]
    update += ["elif clip_kind == 2:"] + [f"    clamp({g}, clip)" for g in flats]
    for k in range(n):
        bufs = "".join(f", b{k}_{j}.reshape(b{k}_{j}.size)" for j in range(nbuf))
        scalars = "".join(f", hyper[{k}, {j}]" for j in range(len(opt.fused_scalars(1))))
        update.append(f"update(p{k}.reshape(p{k}.size), {flats[k]}{bufs}{scalars})")
    update.append("@UPDATED")

    ps, gs = [f"p{k}" for k in range(n)], [f"g{k}" for k in range(n)]
    grads_args = (["T", "B", "dims", "K", "ids", "targets"] + [f"s{i}" for i in range(len(snames))] + ps
                  + [f"v{m}" for m in range(len(pre))] + gs + [f"dv{m}" for m in range(len(pre))]
                  + ["P", "dL", "dX", "total"] + (["Xe", "dXe"] if ke is not None else []) + args)
    update_args = ps + gs + [f"b{k}_{j}" for k in range(n) for j in range(nbuf)] + ["hyper", "clip_kind", "clip"]
    names = {k: f"the cell's {name}" for name, k in cell_index.items() if k is not None}
    names.update({kw: "the read-out's weight", kb: "the read-out's bias", ke: "the embedding"})
    legend = ["# sI: the initial states; ids, targets: (T, B) class indices"] + [f"# p{k} {names[k]}" for k in range(n)]
    legend += [f"# v{m} {plan.nodes[nid].op} of parameters, computed by the engine" for m, nid in enumerate(pre)]
    legend.append("# gK: pK's gradient" + (", dvM: vM's" if pre else "") + "".join(f"; bK_{j}: pK's {b}" for j, b in enumerate(opt._buffer_names()))
                  + f" ({type(opt).__name__})")
    source = HEADER.format(version=TRAINING_VERSION, generator=GENERATOR_VERSION, fused=FUSED_HASH,
                           cell=plan.cell, kernels=Path(prep.module.__file__).stem, update=owner.update,
                           tiny=_TINY, helpers=HELPERS_HASH)
    if not pre:  # one call
        source += _function("train_step", grads_args + update_args[2 * n:], _returns(legend + body + update, {
            "@BAD": f"return 0.0, 0.0, {BAD_INDEX}", "@GRADS": None, "@NOT_PLAIN": f"return loss, sq, {NOT_PLAIN}",
            "@UPDATED": f"return loss, norm, {UPDATED}"}), "(loss, norm or sum of squares, status): " + STATUS)
    else:  # two: Python adds the gradients that reach parameters through the vM between them
        source += _function("train_grads", grads_args, _returns(legend + body, {
            "@BAD": f"return 0.0, {BAD_INDEX}", "@GRADS": f"return loss, {UPDATED}"}),
            "(loss, status): every gradient, the vM's too; " + STATUS)
        source += _function("train_update", update_args, _returns(update, {
            "@NOT_PLAIN": f"return sq, {NOT_PLAIN}", "@UPDATED": f"return norm, {UPDATED}"}),
            "(norm or sum of squares, status): clip, and the optimizer's update of every parameter")
    return source, args, pre


def _returns(lines, returns):
    """`lines` with each placeholder line (@BAD, ...) replaced by its return statement, or dropped (None)."""
    out = []
    for line in lines:
        key = line.strip()
        if key in returns:
            if returns[key] is not None:
                out.append(line[:len(line) - len(line.lstrip())] + returns[key])
        else:
            out.append(line)
    return out


def _flat(a):
    """The source of a 1-d view of C-contiguous `a`: the generated code copies, adds and fills through
    rnn.kernels.helpers' loops over such views (an array assignment costs Numba seconds to compile)."""
    return f"{a}.reshape({a}.size)"


def _function(name, args, body, doc):
    return (f"\n\n@njit(cache=True, error_model='numpy')\ndef {name}({', '.join(args)}):\n    \"\"\"{doc}\"\"\"\n"
            + "".join(f"    {line}\n" for line in body))


HEADER = '''"""The whole training step of {cell} with a linear read-out, its mean cross-entropy and {update}'s update,
generated by rnn.kernels.training (version {version}, kernels version {generator}) around the kernels in
{kernels}.py; built on minigrad.fused {fused} and rnn.kernels.helpers {helpers}.

Generated code: the file name is the hash of this text, and a file whose bytes differ is written again.
"""
import math

import numpy as np
from numba import njit

from minigrad import fused as _fused
from rnn.kernels.cache import loaded as _loaded
from rnn.kernels.helpers import add, copy, fill

_kernels = _loaded("{kernels}")
forward, backward = _kernels.forward, _kernels.backward
linear_nll, linear_nll_grad = _fused.kernel("linear_nll"), _fused.kernel("linear_nll_grad")
scale, clamp, update = _fused.kernel("scale_one"), _fused.kernel("clamp_one"), _fused.kernel("{update}")
TINY = {tiny!r}
'''
