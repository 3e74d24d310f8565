"""The Tensor: an array that remembers the ops that made it, and backward() over them.

The ops are the primitives of minigrad.primitives (each a forward and its
vector-Jacobian product in one record, see minigrad.op); `record` writes one
onto its output (name, parents, attributes, the VJP and the arrays it saw)
so that `backward()` can walk the graph and `trace()` can read it back as
plain data.

A vjp reads the arrays its forward saw, so `backward()` is only right if they
have not changed since.  Two rules keep it so (see `record`):

* the value an op computes is a read-only array while it is recorded: NumPy
  refuses a write into it;
* a leaf (a parameter, an input, a constant) stays writable — optimizers and
  users update it in place — so when an op records it, the leaf's values are
  copied (once per leaf until its `.data` is handed out again), and
  `backward()` first checks that every recorded leaf still holds those values,
  naming the tensor and the op if not.

Gradients of gradients: `record` also keeps the primitive's VJP rule, which is
written with `ops`.  `backward(create_graph=True)` and `grad(...,
create_graph=True)` run each rule on the tensors themselves — the op's output
and its arguments — instead of on the arrays the forward saw, so the backward
pass is recorded like any computation and can be differentiated again.  An op
recorded without a rule (the rnn package's fused kernel, whose vjp runs on
arrays) cannot take part: such a backward is refused, naming the op and, from
`RECORDING_ADVICE`, what to do instead.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import types

import numpy as np

from . import fused
from .errors import ShapeError
from .walk import toposort

_FLOATS = (np.float32, np.float64)


class _GradMode:
    enabled = True


class no_grad:
    """Context manager (and decorator) in which ops record nothing."""

    def __enter__(self):
        self._prev, _GradMode.enabled = _GradMode.enabled, False

    def __exit__(self, *exc):
        _GradMode.enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*a, **k):
            with type(self)():
                return fn(*a, **k)
        return wrapped


class enable_grad(no_grad):
    """Record ops even inside no_grad (the rnn package traces a step this way)."""

    def __enter__(self):
        self._prev, _GradMode.enabled = _GradMode.enabled, True


def is_grad_enabled() -> bool:
    return _GradMode.enabled


class scope:
    """``with mg.scope("attention"):`` — the ops recorded inside carry the scope's name (nested scopes
    a path), so a picture can draw a box around them or collapse them to one node."""
    _stack: list = []

    def __init__(self, name):
        self.name = str(name)

    def __enter__(self):
        scope._stack.append(self.name)
        return self

    def __exit__(self, *exc):
        scope._stack.pop()


# The array dtypes a tensor keeps as they are (see _as_array): float32, float64, integers, bool.  An op's
# result of one of these is wrapped as it is (op.Primitive.__call__).
_KEPT = frozenset(np.dtype(c) for c in "fd?" + np.typecodes["AllInteger"])


def _as_array(data, dtype=None, what="Tensor"):
    if isinstance(data, Tensor):
        data = data._data
    try:
        arr = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what}: cannot convert {type(data).__name__} to a numeric array ({e})") from None
    if arr.dtype.kind == "f" and arr.dtype not in _FLOATS:
        arr = arr.astype(np.float64)  # float16 / longdouble: compute in float64
    elif arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: cannot make a tensor from {type(data).__name__} "
                        f"with dtype {arr.dtype}; give real numbers")
    return arr


class Tensor:
    """An n-d array that remembers the ops that made it.

    Tensor(data, requires_grad=False, name=None, dtype=None): floats become
    float64 unless they are float32 already; integers stay integers (indices,
    targets) and cannot require grad.
    """

    __array_ufunc__ = None  # `ndarray + Tensor` defers to Tensor.__radd__
    # Class defaults, so that making a tensor sets none of them (see record() for what they mean).
    _private = False        # a constant made from a Python number: no one else holds its array
    _saved = None           # (leaf, its array, copy) per leaf this op recorded
    _version = 0            # bumped whenever the array is handed out (it may be written) or replaced
    _copy = None            # the copy of this leaf's values taken at `_copy_version`
    _copy_version = -1
    _scope = ()             # the scopes (mg.scope) an op was recorded in, outermost first
    _rule = None            # the primitive's VJP rule, run on tensors when a backward is recorded
    _seq = 0                # when an op was recorded (1, 2, ...; 0 for a leaf): see grad()
    # What __init__ sets, as defaults too: a primitive's call makes its output setting only its array.
    attrs = types.MappingProxyType({})  # read-only: a default shared by every tensor must not be written
    requires_grad = False
    name = None
    grad = None
    op = None               # name of the primitive that made this tensor; None for a leaf
    _parents = ()
    _vjp = None
    _saw = None             # what the forward saw, the vjp's arguments after g (see record)
    _retain = False

    def __init__(self, data, requires_grad=False, name=None, dtype=None):
        self._data = _as_array(data, dtype)
        if self._data.dtype.kind != "f" and requires_grad:
            raise TypeError(f"Tensor: only floating-point tensors can require grad, got {self._data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.grad = None
        self.op = None          # name of the primitive that made this tensor; None for a leaf
        self.attrs = {}         # that primitive's non-tensor arguments
        self._parents = ()
        self._vjp = None
        self._retain = False

    @property
    def data(self):
        """The values, a NumPy array.  Writing into a leaf's array in place is allowed (optimizers
        do); a value an op computed is read-only while it is recorded."""
        self._version += 1  # the caller may write through it: the next op to record it copies it again
        return self._data

    @data.setter
    def data(self, value):
        self._data = _as_array(value, what="Tensor.data")
        self._version += 1

    # --- plain attributes -------------------------------------------------
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    is_leaf = property(lambda self: self.op is None)

    def __len__(self):
        return len(self._data)

    def __bool__(self):  # as NumPy: only a one-element tensor has a truth value
        if self._data.size != 1:
            raise ValueError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self._data)

    def __repr__(self):
        extra = f", name={self.name!r}" if self.name else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self._data, precision=4, threshold=20)}, dtype={self.dtype}{extra})"

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item: tensor of shape {self.shape} has {self._data.size} elements, not 1")
        return self._data.item()

    def numpy(self):
        return self.data

    def detach(self):
        """The same values, cut from the graph (gradients stop here); they share the array."""
        return Tensor(self._data, name=self.name)

    def named(self, name):
        """Give this value a name (shown in pictures and messages); returns the tensor itself."""
        self.name = name
        return self

    def retain_grad(self):
        """Keep `.grad` on this intermediate tensor after backward()."""
        self._retain = True
        return self

    def zero_grad(self):
        self.grad = None

    # --- backward ------------------------------------------------------------
    def backward(self, grad=None, create_graph=False):
        """Reverse-mode sweep over the recorded graph; leaf gradients accumulate in `.grad`.

        create_graph=True records the sweep itself (see the module docstring): `.grad` then holds
        Tensors that can be differentiated again (an optimizer step or a clip reads their values)."""
        if not self.requires_grad:
            raise RuntimeError(f"backward: tensor of shape {self.shape} does not require grad "
                               "(no input that requires grad took part in computing it)")
        seed = _seed(self, grad, "backward", "grad", create_graph)
        order = toposort([self], _parents)
        check_saved(order, create_graph)  # before any gradient is written: a refused backward changes nothing
        with _recording(create_graph):
            for node, g in sweep(order, {self: seed}, None, create_graph, "backward"):
                if node.grad is None:
                    node.grad = g if create_graph else g.copy()  # an array may be shared by several nodes' vjps
                else:
                    node.grad = node.grad + g

    # --- operators (one-liners over the primitives) --------------------------
    def __add__(self, o): return add(self, o)
    def __radd__(self, o): return add(o, self)
    # A bare scalar is coerced beside self first: alone, neg/power would make it float64 (or int).
    def __sub__(self, o): return add(self, neg(o if isinstance(o, Tensor) else coerce([self, o], "sub")[1]))
    def __rsub__(self, o): return add(o, neg(self))
    def __mul__(self, o): return mul(self, o)
    def __rmul__(self, o): return mul(o, self)
    def __truediv__(self, o):
        a = _true(self)
        return mul(a, power(_true(coerce([a, o], "div")[1]), exponent=-1.0))

    def __rtruediv__(self, o): return mul(o, power(_true(self), exponent=-1.0))
    def __neg__(self): return neg(self)
    def __mod__(self, o): return mod(self, o)
    def __rmod__(self, o): return mod(o, self)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def __getitem__(self, index):
        unwrap = lambda i: i._data if isinstance(i, Tensor) else i
        index = tuple(map(unwrap, index)) if isinstance(index, tuple) else unwrap(index)
        return getitem(self, index=index)

    def __pow__(self, o):
        if not isinstance(o, Tensor) and np.ndim(o) == 0:
            return power(self, exponent=float(_as_array(o, what="pow")))
        return pow_tensor(self, _float_beside(o, self))

    def __rpow__(self, o):
        return pow_tensor(_float_beside(o, self), self)

    def exp(self): return exp(self)
    def log(self): return log(self)
    def tanh(self): return tanh(self)
    def sigmoid(self): return sigmoid(self)
    def relu(self): return relu(self)
    def sum(self, axis=None, keepdims=False): return sum(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis=axis, keepdims=keepdims)
    def reshape(self, *shape): return reshape(self, shape=shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
    def transpose(self, *axes): return transpose(self, axes=(axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None)
    def astype(self, dtype): return astype(self, dtype=np.dtype(dtype).name)
    T = property(lambda self: transpose(self))

    def mean(self, axis=None, keepdims=False):
        from .functional import mean
        return mean(self, axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1):
        from .functional import softmax
        return softmax(self, axis=axis)

    def log_softmax(self, axis=-1):
        from .functional import log_softmax
        return log_softmax(self, axis=axis)


# --- recording, and checking what was recorded ---------------------------------

_RECORDED = itertools.count(1)


def record(out, op, parents, vjp, attrs=None, rule=None, saw=None):
    """Make `out` the recorded result of `op` over `parents`, differentiated by `vjp`.

    The vjp will read the arrays the forward saw.  So `out`'s array is made
    read-only, and each leaf parent's values are copied (shared by every op that
    records the leaf until its `.data` is handed out again) for `check_saved`.
    `rule(g, out, *parents, **attrs)`, when given, is the same vjp written with
    `ops`, run on tensors by a backward that is recorded (create_graph=True).

    `saw`, when given, is what the forward saw, its output array then its
    arguments' arrays (then, for a primitive that saves some, its residuals): backward() calls vjp(g, *saw, **attrs) — a primitive's
    rule as it is, with no object made per op to bind them (0.15 us per op on
    small tensors).  Without it, vjp(g) (a closure over what it needs)."""
    data, saved = out._data, None
    for p in parents:
        arr = p._data
        if arr is data:  # stop_gradient returns its input: freeze a view of it, not the input's array
            data = out._data = data.view()
        if p._vjp is None and not p._private:
            if p._copy_version != p._version:
                p._copy, p._copy_version = arr.copy(), p._version
            if saved is None:
                saved = []
            saved.append((p, arr, p._copy))
    data.setflags(False)  # write=False, as .flags.writeable = False at a sixth of the cost (a keyword: a third)
    if scope._stack:
        out._scope = tuple(scope._stack)
    out.requires_grad = True
    out.op, out.attrs = op, {} if attrs is None else attrs
    out._parents, out._vjp, out._saved = tuple(parents), vjp, saved
    out._rule, out._seq, out._saw = rule, next(_RECORDED), saw
    return out


def check_saved(order, create_graph=False, who="backward"):
    """Raise if a leaf that an op in `order` recorded was changed in place since — or, for a recorded
    backward, which reads the leaf tensor itself rather than the array the forward saw, given a new
    array (`leaf.data = ...`)."""
    seen = set()
    for node in order:
        for leaf, arr, copy in node._saved or ():
            if id(copy) in seen:
                continue
            seen.add(id(copy))
            replaced = create_graph and leaf._data is not arr
            if replaced or not same_bits(arr, copy):
                tensor = f"the tensor {leaf.name!r}" if leaf.name else "a tensor"
                how = "given new values (.data = ...)" if replaced else "changed in place"
                i = node._parents.index(leaf)  # by identity: a Tensor has no __eq__
                raise RuntimeError(
                    f"{who}: {tensor} of shape {leaf.shape} (argument {i} of {node.op}) was {how} after "
                    f"{node.op} recorded it, so its gradients would mix old and new values; recompute the "
                    "forward after changing it, or change a copy")


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def recorded_copy(leaf):
    """The copy of leaf tensor `leaf`'s values that its last recording kept (check_saved compares the
    leaf against it; it is never written to), or None."""
    return leaf._copy


def same_bits(arr, copy):
    """Whether `arr` still holds `copy`'s values bit for bit (a NaN that stays a NaN is unchanged).  Up to
    tens of kB as bytes: two short copies and a memcmp (0.1 us at 64 B, where a ufunc and a reduction
    take 1.8); above, as unsigned integers of their width in one compiled loop (minigrad.fused: a
    parameter's check after every optimizer step), or NumPy's == where Numba is not there."""
    if arr.nbytes <= 32768:
        return arr.tobytes() == copy.tobytes()
    u = _UINT[arr.dtype.itemsize]
    if arr.flags.c_contiguous and copy.flags.c_contiguous:
        same = np.zeros(1, bool)
        if fused.run("same_words", arr.reshape(-1).view(u), copy.reshape(-1).view(u), same):
            return bool(same[0])
    return bool((arr.view(u) == copy.view(u)).all())


# --- the reverse sweep, and gradients as values ----------------------------------------

# op name -> what to do instead when a backward through it cannot be recorded (its vjp runs on
# arrays only); filled by the packages that record such ops (rnn: its fused kernel).
RECORDING_ADVICE: dict = {}


def _recording(create_graph):
    """Ops record during a recorded backward even inside no_grad: create_graph asks for exactly that."""
    return enable_grad() if create_graph else contextlib.nullcontext()


def sweep(order, grads, wanted=None, create_graph=False, who="backward", needed=None):
    """Reverse mode over `order` (parents first) from the seed gradients in `grads` ({tensor:
    gradient}).  Returns [(node, its whole gradient)] for the nodes in `wanted` (None: what backward()
    keeps, leaves and retain_grad tensors); computes nothing into tensors outside `needed`, when given.
    Tensors are the keys themselves, hashed by identity (an id() per look-up cost 0.15 us per op).
    Plain: every vjp on the arrays its forward saw.  create_graph: every rule on tensors, recorded
    (call inside `_recording`)."""
    kept = []
    for node in reversed(order):
        g = grads.pop(node, None)
        if g is None:
            continue
        vjp = node._vjp
        if (vjp is None or node._retain) if wanted is None else node in wanted:
            kept.append((node, g))
        if vjp is None:
            continue
        if create_graph:
            _recorded_step(node, g, grads, who, needed)
            continue
        # plain backward(): every vjp on arrays; the common case (an array of the parent's dtype and
        # shape) is recognised by two comparisons and passes through untouched
        saw = node._saw  # a primitive's rule and the arrays its forward saw, or a closure (see record)
        for parent, pg in zip(node._parents, vjp(g) if saw is None else vjp(g, *saw, **node.attrs)):
            if pg is None or not parent.requires_grad:
                continue
            if needed is not None and parent not in needed:
                continue
            arr = parent._data
            if type(pg) is not np.ndarray or pg.dtype is not arr.dtype:
                pg = np.asarray(pg, dtype=arr.dtype)
            if pg.shape != arr.shape:
                raw, pg = pg, unbroadcast(pg, arr.shape)
                if pg.shape != arr.shape:  # a wrong vjp would otherwise broadcast on silently
                    raise RuntimeError(f"{who}: {node.op} gave a gradient of shape {raw.shape} "
                                       f"for an argument of shape {arr.shape}")
            prev = grads.get(parent)
            grads[parent] = pg if prev is None else prev + pg
    return kept


def _recorded_step(node, g, grads, who, needed):
    """One node of a recorded sweep: its rule run on tensors, each parent's part added into `grads`."""
    for parent, pg in zip(node._parents, _recorded_vjp(node, g, who)):
        if parent.requires_grad and pg is not None and (needed is None or parent in needed):
            raw = _recorded_grad(pg, parent, node, who)
            pg = unbroadcast(raw, parent.shape)
            if pg.shape != parent.shape:
                raise RuntimeError(f"{who}: {node.op} gave a gradient of shape {raw.shape} "
                                   f"for an argument of shape {parent.shape}")
            prev = grads.get(parent)
            grads[parent] = pg if prev is None else prev + pg


def _recorded_vjp(node, g, who):
    """node's VJP as engine ops on tensors — its arguments, and itself as the output — so it is recorded."""
    if node._rule is None:
        attrs = ", ".join(f"{k}={v!r}" for k, v in node.attrs.items())
        advice = RECORDING_ADVICE.get(node.op, "compute it with engine ops (primitives) instead")
        raise RuntimeError(f"{who}(create_graph=True): {node.op}{f' ({attrs})' if attrs else ''} of shape "
                           f"{node.shape} computes its vector-Jacobian product on arrays only, so a backward "
                           f"through it cannot be recorded and differentiated again; {advice}")
    return node._rule(g, node, *node._parents, **node.attrs)


def _recorded_grad(pg, parent, node, who):
    """A rule's gradient for `parent` in a recorded backward: a Tensor (an array would be a constant,
    cut from the graph: silently wrong second derivatives) in the parent's dtype."""
    if not isinstance(pg, Tensor):
        raise TypeError(f"{who}(create_graph=True): the vjp of {node.op} gave a {type(pg).__name__}, not a "
                        f"Tensor, for an argument of shape {parent.shape}: write its rule with `ops`, so that "
                        "it runs on tensors")
    return pg if pg.dtype == parent.dtype else astype(pg, dtype=parent.dtype.name)


def _seed(out, grad, who, arg, create_graph):
    """The gradient to start from at `out`: ones for a scalar, else `grad` of out's shape — kept a Tensor
    in a recorded backward, so the result can be differentiated with respect to it too."""
    if grad is None:
        if out._data.size != 1:
            raise RuntimeError(f"{who}: tensor of shape {out.shape} is not a scalar; "
                               f"pass {arg}= an array of that shape")
        grad = np.ones(out._data.shape, out._data.dtype)  # ones_like cost 1 us more
    elif not (create_graph and isinstance(grad, Tensor)):
        grad = _as_array(grad, out.dtype, who)
    if grad.shape != out.shape:
        raise ShapeError(f"{who}: {arg} has shape {grad.shape}, tensor has shape {out.shape}")
    if not create_graph:
        return grad
    grad = grad if isinstance(grad, Tensor) else Tensor(grad)
    return grad if grad.dtype == out.dtype else astype(grad, dtype=out.dtype.name)


def grad(outputs, inputs, grad_outputs=None, create_graph=False):
    """The gradients of `outputs` with respect to `inputs`, as Tensors; no `.grad` is touched.

    outputs: a tensor or a sequence of them; grad_outputs: one array or tensor per output, the vector
    of the vector-Jacobian product (default: 1 for a scalar output).  inputs: a tensor (one Tensor
    back) or a sequence of them (a tuple back), each requiring grad — intermediate values too: ∂L/∂h(t)
    for a state of an unfolded net.  An input the outputs do not depend on gets zeros.
    create_graph=True records the computation, so the gradients can be differentiated again."""
    one = isinstance(inputs, Tensor)
    inputs = [inputs] if one else list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            what = f"a tensor of shape {t.shape} that does not require grad" if isinstance(t, Tensor) \
                else f"a {type(t).__name__}, not a Tensor"
            raise TypeError(f"grad: inputs[{i}] is {what}; only a tensor that requires grad has a gradient")
    for i, o in enumerate(outputs):
        if not isinstance(o, Tensor) or not o.requires_grad:
            raise RuntimeError(f"grad: outputs[{i}] does not require grad: no input that requires grad took "
                               "part in computing it (or it was computed under no_grad)")
    seeds = {}
    for i, (o, g) in enumerate(zip(outputs, grad_outputs)):
        g = _seed(o, g, "grad", f"grad_outputs[{i}]", create_graph)
        seeds[o] = g if o not in seeds else seeds[o] + g
    wanted = set(inputs)
    # A node recorded before every input cannot lie on a path from one, so the walk stops there: the
    # gradient of h(t) by h(t−1) then walks one step of an unfolded net, not all the steps before it.
    first = min(t._seq for t in inputs)
    order = toposort(outputs, lambda t: [p for p in t._parents if p._seq >= first] if first else t._parents)
    needed = set(wanted)  # what lies on a path from an input to an output: nothing else is computed
    for t in order:
        if t not in needed and any(p in needed for p in t._parents):
            needed.add(t)
    order = [t for t in order if t in needed]
    check_saved(order, create_graph, "grad")
    with _recording(create_graph):
        got = {node: g for node, g in sweep(order, seeds, wanted, create_graph, "grad",
                                                needed)}
    grads = tuple(_as_tensor(got.get(t), t) for t in inputs)
    return grads[0] if one else grads


def _as_tensor(g, like):
    """An input's gradient as a Tensor: zeros if nothing reached it; an array copied, as backward() does."""
    if g is None:
        return Tensor(np.zeros(like.shape, like.dtype))
    return g if isinstance(g, Tensor) else Tensor(g.copy())


def hvp(f, x, v):
    """The Hessian of the scalar f(x) times v, H v = ∇ₓ(∇ₓf · v), by differentiating a recorded gradient:
    one forward and two backward passes, no Hessian formed.  x and v: a tensor, or sequences of them
    (x requiring grad), f taking x as its arguments; returns a Tensor, or a tuple, like x."""
    one = isinstance(x, Tensor)
    xs, vs = ([x], [v]) if one else (list(x), list(v))
    for i, xi in enumerate(xs):
        if not isinstance(xi, Tensor) or not xi.requires_grad:
            what = f"a tensor of shape {xi.shape} that does not require grad" if isinstance(xi, Tensor) \
                else f"a {type(xi).__name__}, not a Tensor"
            raise TypeError(f"hvp: x{'' if one else f'[{i}]'} is {what}; the Hessian is taken with respect to "
                            "tensors that require grad")
    if len(vs) != len(xs) or any(np.shape(getattr(vi, "_data", vi)) != xi.shape for xi, vi in zip(xs, vs)):
        raise ShapeError(f"hvp: v must have x's shapes {[xi.shape for xi in xs]}, got "
                         f"{[np.shape(getattr(vi, '_data', vi)) for vi in vs]}")
    with enable_grad():
        y = f(*xs)
        if not isinstance(y, Tensor) or y.size != 1:
            raise ValueError(f"hvp: f must return a scalar tensor, got "
                             f"{f'shape {y.shape}' if isinstance(y, Tensor) else type(y).__name__}")
        g = grad(y, xs, create_graph=True)
        dot = None
        for gi, vi in zip(g, vs):
            term = (gi * vi).sum()
            dot = term if dot is None else dot + term
    if not dot.requires_grad:  # the gradient does not depend on x (f linear in it): H = 0
        hv = tuple(Tensor(np.zeros(t.shape, t.dtype)) for t in xs)
    else:
        hv = grad(dot, xs)
    return hv[0] if one else hv


def _true(t):
    """t for true division: an integer tensor (never one that requires grad) as float64, like NumPy's /."""
    return t if t.dtype.kind == "f" else Tensor(t._data.astype(np.float64))


def _float_beside(o, t):
    """`o` for a float op beside tensor t: bare scalars and integer or bool arrays take t's float
    dtype (2 ** x and x ** [1, 2] stay float32 for a float32 x); float arrays keep theirs."""
    if isinstance(o, Tensor):
        return o
    arr = _as_array(o, what="pow")
    weak = arr.dtype.kind in "iub" or isinstance(o, (int, float, np.number))
    return arr.astype(t.dtype if t.dtype.kind == "f" else np.float64) if weak else arr


def _parents(t):
    return t._parents


# The operators above call the primitives, which are defined in terms of Tensor: imported last.
from .op import coerce, unbroadcast  # noqa: E402
from .primitives import (add, astype, getitem, matmul, max, mod, mul, neg, pow_tensor, power,  # noqa: E402
                         relu, reshape, sigmoid, sum, tanh, transpose, exp, log)
