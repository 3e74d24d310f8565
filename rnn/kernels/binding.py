"""The numba backend of rnn.run: the whole sequence as one engine node.

Its forward is the generated forward kernel; its vjp runs the generated BPTT
kernel and then the GEMMs that give the weight gradients.  What surrounds it is
plain engine ops, so gradients reach parameters, xs and state0 through the
engine as usual:

    W.T of a parameter W                     -> read off W by this node: no engine op
    slices of W, other parameter-only nodes  -> engine ops, once per call
    x(t) @ W for all t (hoisted products)    -> one GEMM over (T*B, I) in this node, two in its vjp
                                                (one-hot x(t): a gather of rows of W.T, a scatter back)
    the loop                                 -> this node: all new states, (T, B, sum of widths)
    outputs, final state                     -> engine slices of that node
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

import minigrad as mg
from minigrad import Tensor
from minigrad.graph import run_ops
from minigrad.primitives import getitem, reshape
from minigrad.tensor import enable_grad, is_grad_enabled, record, recorded_copy, same_bits
from minigrad.walk import toposort

from ..bidirectional import Bidirectional
from ..cell import Cell
from ..rolled import as_tuple
from ..stacked import Stacked
from ..run import RunResult, total
from ..unfold import unfold
from . import arrays as kinds, cache as kernel_cache
from .arrays import KINDS
from .blas import (blas_rows, carve, carve_plan, gather_rows, matmul2d, matmuls2d, one_hot_rows, scatter_rows,
                   staggered, transposed)
from .emit import generate, ident
from .fingerprint import kept_while_unchanged
from .directions import run_bidirectional, run_layers
from .head import Head
from .ir import KernelError, UnsupportedCellError
from .passes import make_plan
from .threads import run_kernel, splits

_PER_CELL = weakref.WeakKeyDictionary()   # cell -> {(run key, fingerprint): (Prepared or the error, array copies)}
_BY_SIGNATURE: dict = {}                  # structure of a rolled graph -> (plan, layout, module)
_UNFOLDED: OrderedDict = OrderedDict()    # (id(rolled), T) -> unfolded graph, a few recent ones


class Prepared:
    def __init__(self, rolled, plan, layout, module):
        self.rolled, self.plan, self.layout, self.module = rolled, plan, layout, module
        self.consts = {nid: n.value for nid, n in plan.nodes.items() if n.kind == "const"}
        # what every call would otherwise recompute from the plan and layout
        self.snames = [name for name, _, _ in plan.states]
        self.state_index = {name: i for i, name in enumerate(self.snames)}
        self.sname = {name: _sname(plan, name) for name in self.snames}
        self.dims = np.asarray(layout.dims[:-1] + [blas_rows()], dtype=np.int64)
        widths = {layout.arrays[kinds.name("state", self.sname[n])][2][-1] for n in self.snames}
        # several states of one width: one buffer, each state's steps contiguous (_run)
        self.stacked_states = len(self.snames) > 1 and len(widths) == 1
        self._kconsts, self._carved = {}, {}
        self.transposes = {}  # kernel array name -> (the weight's recorded copy, its transpose): _transposed_weight
        self.forward_arrays = [(name, what, key, spec) for name, (what, key, spec) in layout.arrays.items()]
        self.inputs = [(name, what, key) for name, what, key, _ in self.forward_arrays  # what a call fills in
                       if KINDS[what].filled_by_call]
        self.backward_arrays = [(name, what, spec) for name, (what, key, spec) in layout.arrays.items()
                                if KINDS[what].grad and what != "grad_out"]
        # W.T of a parameter W as a product's right operand (x @ W.T, as the built-in cells write it)
        # is read off W: the engine records no transpose node, and the gradient comes out in W's layout.
        rights = {plan.nodes[key].args[1] for _, what, key in self.inputs
                  if what in ("hoist", "rec_weight", "rec_weight_t")}
        self.folded = {r: plan.nodes[r].args[0] for r in rights if _param_transpose(plan, r)}
        self.pre = _pre_needed(plan, self.inputs, self.folded)
        self.heads = Heads(rolled)
        self.weight_arrays = {key: _weight_arrays(plan, key) for _, what, key in self.inputs if what == "rec_weight"}
        # the largest recurrent weight, in bytes: each block of a split call reads it whole at every step
        self.weight_bytes = max((math.prod(plan.nodes[plan.nodes[key].args[1]].shape)
                                 for _, what, key in self.inputs if what == "rec_weight"),
                                default=0) * np.dtype(plan.dtype).itemsize

    def carved(self, T, B, dtype):
        """Per (T, B, dtype): the carve plans of the forward's own arrays and of the backward's."""
        key = (T, B, dtype)
        got = self._carved.get(key)
        if got is None:
            if len(self._carved) >= 64:  # many sequence lengths: keep the table small
                self._carved.clear()
            fwd = [(n, _shape(spec, T, B), k) for k, (n, what, _, spec) in enumerate(self.forward_arrays)
                   if KINDS[what].forward_own and not (what == "state" and self.stacked_states)]
            nf = len(self.forward_arrays)
            bwd = [(n, _shape(spec, T, B), nf + k, KINDS[what].zeroed)
                   for k, (n, what, spec) in enumerate(self.backward_arrays)]
            got = self._carved[key] = (
                [n for n, _, _ in fwd], carve_plan([s for _, s, _ in fwd], dtype, [k for _, _, k in fwd]),
                [n for n, _, _, _ in bwd], carve_plan([s for _, s, _, _ in bwd], dtype, [k for _, _, k, _ in bwd]),
                [z for _, _, _, z in bwd])  # zeroed: read before written, or accumulated
        return got

    def kernel_consts(self, dtype):
        got = self._kconsts.get(dtype)
        if got is None:
            got = self._kconsts[dtype] = np.asarray(self.layout.consts, dtype=dtype)
        return got


def engine_whole(layout, name, shape):
    """Whether the kernels read engine array `name` (a value of `shape`) in its own shape; else as (W,) or (1,)."""
    return name in layout.full or (len(shape) == 2 and shape[0] != 1)


def _pre_needed(plan, inputs, folded):
    """The parameter-only nodes the engine still evaluates per call: those the kernel reads, or that
    feed x-only nodes, apart from folded transposes."""
    roots = [a for nid in plan.xpre for a in plan.nodes[nid].args]
    for _, what, key in inputs:
        if what == "engine":
            roots.append(key)
        elif what in ("hoist", "rec_weight", "rec_weight_t"):
            left, right = plan.nodes[key].args
            roots += ([left] if what == "hoist" else []) + ([] if right in folded else [right])
    pre = lambda nid: [a for a in plan.nodes[nid].args if plan.nodes[a].kind == "pre"]  # noqa: E731
    needed = set(toposort([r for r in roots if plan.nodes[r].kind == "pre"], pre))
    return [nid for nid in plan.pre if nid in needed]


def _param_transpose(plan, nid):
    n = plan.nodes[nid]
    return (n.op == "transpose" and n.attrs.get("axes") in (None, (1, 0))
            and plan.nodes[n.args[0]].kind == "param" and len(plan.nodes[n.args[0]].shape) == 2)


def signature(rolled):
    """Everything the generated code and plan depend on: ops, attributes, shapes, wiring, constants."""
    args = rolled.arguments()
    parts = [rolled.cell, rolled.x, tuple(rolled.loops), rolled.output, rolled.target, rolled.loss,
             tuple(sorted(rolled.params.items())), tuple(sorted(rolled.frozen))]
    for nid, n in rolled.nodes.items():
        const = None if n.value is None else (np.asarray(n.value).dtype.str, np.asarray(n.value).tobytes())
        parts.append((nid, n.op, n.role, n.shape, n.dtype, repr(sorted(n.attrs.items())), tuple(args[nid]), const))
    return tuple(parts)


def prepare(cell, batch, targets=None, context=None, inputs=True):
    """The traced network (with its loss when `targets`, an rnn.rolled.Targets, says what y(t) is),
    the plan and the compiled kernels of its step for `cell` as it is now; raises
    UnsupportedCellError.  Kept per (cell, batch, targets) and reused while nothing the step can
    read from the cell has changed (see rnn.fingerprint): a changed one is traced again."""
    got = kept_while_unchanged(_PER_CELL, cell, (batch, targets, context, inputs),
                               lambda: _prepared(cell.rolled(batch, targets, context=context, inputs=inputs)))
    if isinstance(got, UnsupportedCellError):
        raise got
    return got


def _prepared(rolled):
    """Prepared kernels for `rolled`, or the UnsupportedCellError saying why there are none (kept too:
    a cell that cannot be compiled is not traced and planned again on every call)."""
    sig = signature(rolled)
    try:
        if sig not in _BY_SIGNATURE:
            plan = make_plan(rolled)
            source, layout = generate(plan)
            _BY_SIGNATURE[sig] = (plan, layout, source)
            while len(_BY_SIGNATURE) > 64:  # e.g. a mask that changes every call: each is a new signature
                _BY_SIGNATURE.pop(next(iter(_BY_SIGNATURE)))
        plan, layout, source = _BY_SIGNATURE[sig]
        return Prepared(rolled, plan, layout, kernel_cache.load(source))
    except UnsupportedCellError as e:
        return e


def _engine_values(prep, named, xs, context=()):
    """Engine tensors for parameters, constants, the context, the nodes of those alone and x-only nodes."""
    plan = prep.plan
    env = {pid: named[name] for pid, name in plan.params.items() if pid in plan.nodes}
    env.update((cid, Tensor(v)) for cid, v in prep.consts.items())
    env.update(zip(prep.rolled.context, context))
    node = lambda nid: (plan.nodes[nid].op, plan.nodes[nid].args, plan.nodes[nid].attrs)  # noqa: E731
    run_ops(prep.pre, node, env)
    if plan.xpre:  # ops on x(t) alone run once over all T*B rows
        T, B, I = xs.shape
        env[plan.x] = reshape(xs, shape=(T * B, I)) if xs.requires_grad else Tensor(xs._data.reshape(T * B, I))
        run_ops(plan.xpre, node, env)
    else:
        env[plan.x] = xs
    return env


def _shape(spec, T, B):
    sizes = {"T": T, "T+1": T + 1, "B": B, "2": 2}
    return tuple(sizes.get(s, s) for s in spec)


def run_numba(cell, xs, state0, sup=None, given=None):
    """Run `cell` over time-major `xs` with the generated kernels; see rnn.run.  The step runs in the
    kernels; o(t) and L(t), which nothing carries to the next step, as engine ops over all steps at
    once (rnn.kernels.head) or, where an op has no rule for that, step by step.  A bidirectional
    cell runs one loop per direction (rnn.kernels.directions)."""
    reads = cell.reads() - {"context", "t"}
    teacher = "y_prev" in reads and sup is not None and given.feed in (None, "teacher")
    if reads - ({"y_prev"} if teacher else set()):
        raise UnsupportedCellError("numba backend: y(t−1) fed from the step's own output (a recurrence through "
                                   "o(t)) is not compiled; teacher forcing is" if "y_prev" in reads else
                                   f"numba backend: a step that reads {', '.join(sorted(reads))} is not compiled "
                                   "yet (the graph backend runs it)")
    inputs, head_xs = xs is not None, xs
    fed = _fed(given, sup) if teacher else None
    if fed is not None:  # known before the loop: the kernels read it beside x(t) (rnn.kernels.passes.fed_as_input)
        xs = fed if not inputs else mg.concatenate([xs, fed], axis=-1)
    elif not inputs:  # no x(t) (Fig 10.9's vector to sequence): the kernels see a step input of width 0
        xs = Tensor(np.zeros((given.steps, given.batch, 0), as_tuple(state0)[0].dtype))
    context = as_tuple(given.context) if given is not None and given.context is not None else ()
    if isinstance(cell, Bidirectional):
        return run_bidirectional(cell, xs, state0, sup, run_numba)
    if isinstance(cell, Stacked) and -1 in cell.delays.values():
        return run_layers(cell, xs, state0, sup, run_numba)
    prep = prepare(cell, xs.shape[1], sup and sup.spec, given.context_spec if context else None, inputs)
    if xs.dtype not in prep.module.__dict__.setdefault("verified_dtypes", set()):
        _verify(cell, prep, xs.shape[1], xs.dtype, context, given.context if context else None)
    result = _run(cell, prep, xs, state0, context, given.context if context else None, head_xs)
    if fed is not None:
        result.fed = fed
    if sup is not None:
        attach_losses(result, cell, prep.heads, prep.rolled, sup, len(xs))
    return result


def _fed(given, sup):
    """y(t−1) at every step, teacher-forced: y0, then the targets y(0) ... y(T−2), one-hot where they
    are class indices (as the unfolded graph feeds them)."""
    ys, y0 = sup.targets, given.y0
    B, K = y0.shape
    prev = (mg.onehot(Tensor(ys._data[:-1]), depth=K, dtype=y0.dtype.name) if ys.dtype.kind in "iu"
            else ys[:-1])
    return mg.concatenate([reshape(y0, shape=(1, B, K)), prev], axis=0)


def _input_width(cell, prep):
    """The width of the kernels' step input: x(t), with a teacher-forced y(t−1) beside it."""
    x = prep.plan.nodes.get(prep.plan.x)
    return cell.input_size if x is None else x.width


def _verify(cell, prep, B, dtype, context=(), context_given=None):
    """Load or compile both kernels now, on one step of zeros, so that a failure (a damaged Numba
    cache, a typing error) surfaces here, where rnn.run can still fall back, and not in the middle
    of backward().  Numba's cache files for the kernels are removed and compiled afresh once first."""
    params = cell.parameters()
    grads = [p.grad for p in params]
    for attempt in (1, 2):
        try:
            xs = Tensor(np.zeros((1, B, _input_width(cell, prep)), dtype), requires_grad=True)
            state0 = tuple(Tensor(np.zeros(s.shape, dtype), requires_grad=True)
                           for s in as_tuple(cell.initial_state(B)))
            zeros = tuple(Tensor(np.zeros(c.shape, dtype), requires_grad=True) for c in context)
            with enable_grad():
                as_given = zeros if isinstance(context_given, (tuple, list)) else (zeros[0] if zeros else None)
                per_state = _run(cell, prep, xs, state0 if len(state0) > 1 else state0[0], zeros,
                                 as_given).states.per_state
                sum((s.sum() for s in per_state[1:]), per_state[0].sum()).backward()
            prep.module.verified_dtypes.add(dtype)
            return
        except Exception as e:
            if attempt == 2:
                raise KernelError(f"numba backend: the generated kernels for {type(cell).__name__} do not load or "
                                  f"compile ({prep.module.__file__}, {kernel_cache.where()}): "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
            prep.module = kernel_cache.reload_clean(prep.module)
            prep.module.__dict__.setdefault("verified_dtypes", set())
        finally:
            for p, g in zip(params, grads):
                p.grad = g


def _run(cell, prep, xs, state0, context=(), context_given=None, head_xs=None):
    """context: the tensors a step reads as its context; context_given: as run() was given them (a
    tensor or a tuple), for an output that reads the context too; head_xs: x(t) for o(t) and L(t)
    where the kernels' input has a teacher-forced y(t−1) beside it."""
    T, B, _ = xs.shape
    named = dict(cell.named_parameters())
    plan, lay = prep.plan, prep.layout
    dtype = xs.dtype
    env = _engine_values(prep, named, xs, context)
    state0 = as_tuple(state0)
    state_index = prep.state_index

    split = splits(prep, B)
    in_blocks = lay.hoisted_in_blocks if split else ()  # hoisted products the blocks may compute, per step
    dims, blocks = prep.dims, []
    fnames, fplan, bnames, bplan, bzero = prep.carved(T, B, dtype)
    arrays, parents, which = dict(zip(fnames, carve(fplan, dtype))), [], []  # which[i]: how parents[i]'s gradient is found
    stacked = None
    if prep.stacked_states:  # several states of one width: one buffer, (n, T+1, B, w)
        names = [kinds.name("state", prep.sname[n]) for n in prep.snames]
        stacked = staggered((len(names), T + 1, B, lay.arrays[names[0]][2][-1]), dtype, 1)
        arrays.update(zip(names, stacked))
    for name, what, key in prep.inputs:
        if what == "x":
            arrays[name] = np.ascontiguousarray(xs._data)
            parents.append(xs), which.append(("x", name))
        elif what == "state":
            arrays[name][0] = state0[state_index[key]]._data
        elif what == "hoist":  # x(t) @ W for all t: one GEMM, its two gradients two GEMMs in the vjp
            left, (right, folded) = env[plan.nodes[key].args[0]], _right(prep, env, named, key)
            L, R = left._data.reshape(T * B, -1), right._data.T if folded else right._data
            hot = None if left.requires_grad else one_hot_rows(L)  # one-hot x(t), a char model's: a gather
            if name in in_blocks and hot is None:  # maybe by the blocks, below
                blocks.append((name, key, L, R, right, folded))
            else:
                arrays[name] = (matmul2d(L, R, split) if hot is None else gather_rows(hot, R)).reshape(T, B, -1)
            parents.extend((left, right))
            # the arrays as the forward saw them: the vjp must not read a .data replaced since
            operands = (key, left._data, left.requires_grad, right._data, right.requires_grad, folded, hot)
            which.extend((("hoist_left", operands), ("hoist_right", operands)))
        elif what in ("hoist_left", "hoist_weight"):  # read only where the blocks compute the product: below
            arrays[name] = _UNUSED_2D[dtype] if what == "hoist_weight" else _UNUSED_3D[dtype]
        elif what == "rec_weight":
            right, folded = _right(prep, env, named, key)
            arrays[name] = _transposed_weight(prep, name, right) if folded else np.ascontiguousarray(right._data)
            parents.append(right), which.append(("weight", (key, folded, right.requires_grad)))
        elif what == "rec_weight_t":  # the backward's products use W.T row-major
            right, folded = _right(prep, env, named, key)
            arrays[name] = np.ascontiguousarray(right._data) if folded else transposed(right._data)
        elif what == "engine":
            t = env[key]
            arrays[name] = np.ascontiguousarray(t._data if engine_whole(lay, name, t.shape) else t._data.reshape(-1))
            if plan.nodes[key].grad:
                parents.append(t), which.append(("engine", key))
    if blocks and len(blocks) == len(in_blocks):  # each block its rows at each step (emit.hoisted_in_block)
        dims = dims.copy()
        dims[-2] = 1
    for name, key, L, R, right, folded in blocks:
        if dims[-2]:
            arrays[name] = staggered((T, B, R.shape[1]), dtype, 4)
            arrays[_node_array("hoist_left", key)] = np.ascontiguousarray(L).reshape(T, B, -1)
            weight = _node_array("hoist_weight", key)  # its transpose at its own offset in a page (blas.transposed)
            arrays[weight] = _transposed_weight(prep, weight, right, 5) if folded else np.ascontiguousarray(R)
        else:  # one of them is a gather: the kernel reads them all from the call
            arrays[name] = matmul2d(L, R, split).reshape(T, B, -1)
    for i, s in enumerate(state0):
        parents.append(s), which.append(("state0", plan.states[i][0]))
    consts = prep.kernel_consts(dtype)
    snames = prep.snames
    S = [arrays[kinds.name("state", prep.sname[n])] for n in snames]
    side_by_side = None
    if len(S) == 1:
        data = S[0][1:]
    elif stacked is not None:
        # the kernel node's output (T, B, n, w), each state its [..., i, :], a contiguous view: no copy puts
        # the states side by side (0.27 ms of an LSTM's call at (100,32,128,128)), and a loss over h reads
        # contiguous memory
        data = stacked[:, 1:].transpose(1, 2, 0, 3)
    else:  # all states side by side, into a pooled buffer: a fresh one is fresh pages, which cost more than the copy
        data = staggered((T, B, sum(s.shape[-1] for s in S)), dtype, 1)

        def side_by_side(b0, b1):  # by each block of a split call, on the rows it has just computed
            np.concatenate([s[1:, b0:b1] for s in S], axis=-1, out=data[:, b0:b1])
    run_kernel(prep.module, "forward", T, B, dims, consts, [arrays[n] for n in lay.forward_args], split=split,
               then=side_by_side)
    out = Tensor(data)
    steps = StepStates(S, [])
    if is_grad_enabled() and any(p.requires_grad for p in parents):
        record(out, "rnn_kernel", parents, _make_vjp(prep, arrays, which, T, B, dims, consts, steps.grads,
                                                     snames, split), {"cell": plan.cell, "T": T})

    if len(S) == 1:
        per_state = [out]
    elif prep.stacked_states:
        per_state = [_view(out, (Ellipsis, i, slice(None))) for i in range(len(S))]
    else:
        offs = list(itertools.accumulate([0] + [s.shape[-1] for s in S]))
        per_state = [_view(out, (Ellipsis, slice(a, b))) for a, b in zip(offs[:-1], offs[1:])]
    steps.per_state = per_state
    stacked = {**{lp.output: per_state[prep.state_index[lp.name]] for lp in prep.rolled.loops},
               prep.rolled.x: xs if head_xs is None else head_xs}
    if type(cell).output is Cell.output:
        outputs = per_state[0]
        per_step = _Rows(outputs)
    elif prep.heads.why_not_output is None:  # o(t) for all steps at once (rnn.kernels.head)
        fixed = {**prep.heads.fixed(named), **dict(zip(prep.rolled.context, context))}
        outputs = prep.heads.output.run({**fixed, **stacked}, T)[prep.rolled.output]
        per_step = _Rows(outputs)
    else:
        extra = {"context": context_given} if "context" in cell.reads("output") else {}
        per_step = [cell.output(tuple(_view(s, t) for s in per_state) if len(S) > 1 else _view(per_state[0], t),
                                **extra) for t in range(T)]
        outputs = mg.stack(per_step, axis=0)

    known = known_tensors_of(named, state0, steps, None if isinstance(per_step, _Rows) else per_step,
                             dict(zip(prep.rolled.context, context)))
    result = KernelRunResult(outputs, None, None, "numba", steps, unfold_args=(prep.rolled, T, None, known))
    result.per_step_outputs, result.per_state = per_step, per_state
    result.stacked = {**stacked, prep.rolled.output: outputs}
    return result


def _transposed_weight(prep, name, weight, k=None):
    """transposed(weight's array, k) for the kernels' array `name`, kept from an earlier call while the
    weight holds the same bits as the copy the engine keeps of it (minigrad.tensor.recorded_copy): a
    512 x 128 weight's transpose cost ~130 us a call in place, the comparison a fraction of that.  Kept
    only when made from values equal to that copy, so a kept one is the transpose of the values now."""
    copy = recorded_copy(weight)
    same = copy is not None and same_bits(weight._data, copy)
    kept = prep.transposes.get(name)
    if same and kept is not None and kept[0] is copy:
        return kept[1]
    out = transposed(weight._data, k)
    if same:
        prep.transposes[name] = (copy, out)
    return out


def known_tensors_of(named, state0, steps, per_step, context=None):
    """What an unfolded graph's tensors can hold without running the DAG: parameters, initial and
    per-step states, outputs (per_step, when they were made step by step), targets and losses."""
    def known(graph, result):
        out = {pid: named[name] for pid, name in graph.params.items()}
        out.update(zip(graph.state0, state0))
        out.update(context or {})
        for t, ids in enumerate(graph.state_out):
            out.update(zip(ids, steps[t]))
        if per_step is not None:
            out.update(zip(graph.outputs, per_step))
        for t, (y, loss) in (result.known_targets or {}).items():
            out[graph.targets[t]], out[graph.losses[t]] = y, loss
        return out
    return known


def attach_losses(result, cell, heads, rolled, sup, T):
    """result.losses and result.loss: L(t) at the loss steps — at every one at once by the traced head,
    or, where an op of the loss has no rule over time, step by step from result.per_step_outputs."""
    # targets that learn (regression onto a learned sequence) keep their gradient; others are constants
    ys = sup.targets if sup.targets.requires_grad else Tensor(sup.targets._data)
    if heads.why_not_loss is None:
        pick = ((lambda v: v) if sup.steps == list(range(T))
                else (lambda v: getitem(v, index=(np.asarray(sup.steps),))))
        env = {**heads.fixed(dict(cell.named_parameters())), **{k: pick(v) for k, v in result.stacked.items()},
               rolled.target: pick(ys)}
        losses = heads.loss.run(env, len(sup.steps))[rolled.loss]
        result.losses = reshape(losses, shape=(len(sup.steps),))
        result.loss = result.losses.sum() if sup.reduction == "sum" else result.losses.mean()
        result.known_targets = _PerStepLosses(sup, result.losses)
    else:
        ys = [getitem(ys, index=t) for t in sup.steps]
        losses = [cell.loss(result.per_step_outputs[t], y) for t, y in zip(sup.steps, ys)]
        result.losses, result.loss = total(losses, sup)
        result.known_targets = {t: (y, loss) for t, y, loss in zip(sup.steps, ys, losses)}
    result.loss_steps, result.reduction = sup.steps, sup.reduction
    rolled_, T_, _, known = result._unfold_args
    result._unfold_args = (rolled_, T_, sup.steps, known)


class _PerStepLosses:
    """{t: (y(t), L(t))} for the unfolded graph's leaves, made when someone draws it."""

    def __init__(self, sup, losses):
        self.sup, self.losses = sup, losses

    def items(self):
        for i, t in enumerate(self.sup.steps):
            yield t, (Tensor(self.sup.targets._data[t]), _view(self.losses, i))


class Heads:
    """A network's o(t) and L(t) traced once, to run over all steps at once (rnn.kernels.head)."""

    def __init__(self, rolled):
        states = [lp.output for lp in rolled.loops]
        self.consts = {nid: Tensor(n.value) for nid, n in rolled.nodes.items()
                       if n.op == "leaf" and n.role == "constant"}
        self.params = dict(rolled.params)
        known = set(self.params) | set(self.consts) | set(rolled.context)
        self.output = Head(rolled, [rolled.output], states + [rolled.x]) if rolled.output else None
        self.why_not_output = self.output.why_not(known) if self.output else "no output"
        self.loss = (Head(rolled, [rolled.loss], states + [rolled.x, rolled.output, rolled.target])
                     if rolled.loss else None)
        self.why_not_loss = self.loss.why_not(known) if self.loss else "no loss"

    def fixed(self, named):
        """The values every step shares: parameters and constants."""
        return {**{pid: named[name] for pid, name in self.params.items()}, **self.consts}


class _Rows:
    """outputs[t] as engine slices, made when asked for (a cell that emits its state needs none)."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __getitem__(self, t):
        return _view(self.outputs, t)


def _view(t, index):
    return getitem(t, index=index)


def _sname(plan, name):
    i = [n for n, _, _ in plan.states].index(name)
    return name if name.isidentifier() else f"s{i}"


# what a kernel gets for the hoisted products' operands in a call whose blocks do not compute them
_UNUSED_2D = {np.dtype(d): np.zeros((0, 0), d) for d in (np.float32, np.float64)}
_UNUSED_3D = {np.dtype(d): np.zeros((0, 0, 0), d) for d in (np.float32, np.float64)}


def _make_vjp(prep, arrays, which, T, B, dims, consts, step_grads, snames, split):
    """The kernel node's vjp.  It holds the StepStates' StepGrads, which refers to no tensor strongly:
    holding the StepStates would close a cycle (out -> vjp -> steps -> per-state views -> out) that
    keeps every kernel array alive until the garbage collector runs, so their pooled buffers could not
    be reused."""
    lay = prep.layout

    def vjp(g):
        dtype = consts.dtype
        g = np.ascontiguousarray(g, dtype=dtype)
        _, _, bnames, bplan, bzero = prep.carved(T, B, dtype)
        grads = dict(zip(bnames, carve(bplan, dtype)))
        for name, zero in zip(bnames, bzero):
            if zero:
                grads[name].fill(0)
        grads[kinds.name("grad_out")] = g.reshape(T, B, -1)  # stacked states' (T, B, n, w): a view
        for name, same in lay.same.items():  # gradients the kernel stores once for two inputs
            grads[name] = grads[same]
        allv = {**arrays, **grads}
        run_kernel(prep.module, "backward", T, B, dims, consts, [allv[n] for n in lay.backward_args], lay.summed,
                   split=split)
        step_grads.add([grads.get(kinds.name("grad_states", prep.sname[n])) for n in snames])
        out, products = [], []  # products: (index in out, a, b, then), all computed in one hand-off

        def product(a, b, then=None):
            products.append((len(out), a, b, then))
            out.append(None)
        for kind, name in which:
            if kind == "x":
                out.append(grads[kinds.name("grad_x")])
            elif kind in ("hoist_left", "hoist_right"):
                key, left, left_grad, right, right_grad, folded, hot = name
                dXA = grads[_node_array("grad_hoist", key)].reshape(T * B, -1)
                if kind == "hoist_left":
                    if left_grad:
                        product(dXA, right if folded else right.T, lambda r, s=left.shape: r.reshape(s))
                    else:
                        out.append(None)
                elif right_grad and hot is not None:  # onehot(hot).T @ dXA: dXA's rows added up by column
                    dR = scatter_rows(hot, dXA, left.shape[-1])
                    out.append(dR.T if folded else dR)
                elif right_grad:
                    L = left.reshape(T * B, -1)
                    product(*((dXA.T, L) if folded else (L.T, dXA)))
                else:
                    out.append(None)
            elif kind == "engine":  # in the kernel's layout ((W,) for a (1, W) value): back to the value's shape
                got = grads.get(_node_array("grad_engine", name))  # none: only comparisons read it
                out.append(None if got is None else got.reshape(prep.plan.nodes[name].shape))
            elif kind == "weight":
                key, folded, learns = name
                if learns:
                    product(*_weight_grad_operands(prep, allv, key, folded, T, B))
                else:  # frozen: none
                    out.append(None)
            else:
                sn = prep.sname[name]
                parts = [grads[b][0] for b in (kinds.name("grad_state_ew", sn), kinds.name("grad_state_mm", sn))
                         if b in grads]
                out.append(sum(parts[1:], parts[0].copy()) if parts else None)
        done = matmuls2d([(a, b) for _, a, b, _ in products], split)
        for (i, _, _, then), r in zip(products, done):
            out[i] = r if then is None else then(r)
        return out
    return vjp


@functools.lru_cache(maxsize=1 << 12)
def _node_array(kind, nid):
    """The name of node `nid`'s array of `kind`: the vjp asks on every call, and building it cost ~3 us of 180."""
    return kinds.name(kind, ident(nid))


def _weight_arrays(plan, rid):
    """For recurrent product `rid`: (array holding its left operand at every step, the rows' offset,
    its gradient array)."""
    left, grad = plan.nodes[rid].args[0], kinds.name("grad_rec", ident(rid))
    for n, sin, sout in plan.states:
        if left in (sin, sout):  # S_h holds h(0..T): a product of h(t-1) reads rows 0..T-1
            return kinds.name("state", _sname(plan, n)), int(left == sout), grad
    return kinds.name("stored", ident(left)), None, grad


def _weight_grad_operands(prep, allv, rid, folded, T, B):
    """(a, b) with a @ b the sum over steps of left(t)^T dA(t) (its transpose when `folded`): one GEMM
    over all T*B rows."""
    name, offset, grad = prep.weight_arrays[rid]
    L = allv[name] if offset is None else allv[name][offset:offset + T]
    L, dA = L.reshape(T * B, -1), allv[grad].reshape(T * B, -1)
    return (dA.T, L) if folded else (L.T, dA)


def _right(prep, env, named, key):
    """(right operand of matmul node `key`, folded): folded, the parameter W whose transpose it is."""
    r = prep.plan.nodes[key].args[1]
    pid = prep.folded.get(r)
    return (named[prep.plan.params[pid]], True) if pid is not None else (env[r], False)


class StepGrads:
    """dL/d(state at step t) from the backward passes so far, and the step-state tensors made, held
    weakly, whose .grad it fills in.  The kernel's vjp holds it; it holds no tensor, so no cycle."""

    def __init__(self):
        self.grads, self.made = None, []  # grads: per state, (T, B, width) or None

    def add(self, grads):
        if self.grads is None:
            self.grads = list(grads)  # fresh arrays from this backward: no copy needed
        else:
            self.grads = [a if b is None else (b if a is None else a + b) for a, b in zip(self.grads, grads)]
        for t, refs in self.made:
            for r, gs in zip(refs, grads):
                x = r()
                if x is not None and gs is not None:
                    x.grad = gs[t].copy() if x.grad is None else x.grad + gs[t]


class StepStates(Sequence):
    """Per step, the tuple of new state tensors, made on first access; after backward their
    .grad is dL/d(state at step t), the total that flows back through the recurrence.

    The gradients reach them through `grads` (a StepGrads, which the kernel's vjp holds): a made
    state holding this object instead (which holds the made states, to hand out the same ones
    again) made a reference cycle per run that looked at a state — every training step reads the
    final one — and kept the run's graph and pooled kernel buffers alive until the garbage
    collector came by."""

    def __init__(self, S, per_state):
        self._S, self._made, self.grads = S, {}, StepGrads()
        self.per_state = per_state  # engine tensors (T, B, width) per state: steps are slices of them

    def __len__(self):
        return self._S[0].shape[0] - 1

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        t = range(len(self))[t]
        if t not in self._made:
            tup = tuple(_view(s, t) for s in self.per_state)
            if self.grads.grads is not None:
                for x, gs in zip(tup, self.grads.grads):
                    x.grad = None if gs is None else gs[t].copy()
            self.grads.made.append((t, tuple(weakref.ref(x) for x in tup)))
            self._made[t] = tup
        return self._made[t]


class KernelRunResult(RunResult):
    """A RunResult whose unfolded graph and final state are made only when someone looks at them."""

    def __init__(self, *args, unfold_args=None, **kw):
        self._unfold_args, self._graph, self._state = unfold_args, None, None
        self.known_targets = None   # {t: (y(t), L(t))} at the loss steps
        super().__init__(*args, **kw)

    @property
    def state(self):
        if self._state is None:  # the last step's states, as with the graph backend
            last = self.states[len(self.states) - 1]
            self._state = last if len(last) > 1 else last[0]
        return self._state

    @state.setter
    def state(self, s):
        self._state = s

    @property
    def graph(self):
        if self._graph is None and self._unfold_args is not None:
            rolled, T, loss_steps, known = self._unfold_args
            self._graph = unfolded(rolled, T, loss_steps)
            self._graph.tensors = known(self._graph, self)
            self._graph.reduction = self.reduction or "sum"
            self._graph.loss_value = None if self.loss is None else self.loss.item()
        return self._graph

    @graph.setter
    def graph(self, g):
        if g is not None or not hasattr(self, "_graph"):
            self._graph = g


def unfolded(rolled, T, loss_steps=None):
    """A fresh UnfoldedGraph over a cached unfolding: callers may set its tensors and truncation
    marks without touching the cache."""
    key = (id(rolled), T, None if loss_steps is None else tuple(loss_steps))
    base = _UNFOLDED.get(key)
    if base is None or base[0] is not rolled:
        base = (rolled, unfold(rolled, T, loss_steps))
        _UNFOLDED[key] = base
        while len(_UNFOLDED) > 16:
            _UNFOLDED.popitem(last=False)
    g = copy.copy(base[1])
    g.tensors = {}
    return g
