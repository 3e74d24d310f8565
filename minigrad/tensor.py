"""The Tensor and its primitive ops.

Every primitive is a NumPy forward and its vector-Jacobian product, written
side by side.  The decorator records the op (name, parents, attributes) on the
output so that `backward()` can walk the graph and `trace()` can read it back
as plain data.  Everything else in the engine is built from these primitives.

A vjp reads the arrays its forward saw, so `backward()` is only right if they
have not changed since.  Two rules keep it so (see `record`):

* the value an op computes is a read-only array while it is recorded: NumPy
  refuses a write into it;
* a leaf (a parameter, an input, a constant) stays writable — optimizers and
  users update it in place — so when an op records it, the leaf's values are
  copied (once per leaf until its `.data` is handed out again), and
  `backward()` first checks that every recorded leaf still holds those values,
  naming the tensor and the op if not.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import ShapeError

PRIMITIVES: dict = {}  # op name -> the recorded function, so a traced graph can be evaluated again

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


def unbroadcast(grad, shape):
    """Sum `grad` back down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


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
    _saved = None           # (parent index, array, copy) per leaf this op recorded
    _version = 0            # bumped whenever the array is handed out (it may be written) or replaced
    _copy = None            # the copy of this leaf's values taken at `_copy_version`
    _copy_version = -1

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

    def retain_grad(self):
        """Keep `.grad` on this intermediate tensor after backward()."""
        self._retain = True
        return self

    def zero_grad(self):
        self.grad = None

    # --- backward ------------------------------------------------------------
    def backward(self, grad=None):
        """Reverse-mode sweep over the recorded graph; leaf gradients accumulate in `.grad`."""
        if not self.requires_grad:
            raise RuntimeError(f"backward: tensor of shape {self.shape} does not require grad "
                               "(no input that requires grad took part in computing it)")
        if grad is None:
            if self._data.size != 1:
                raise RuntimeError(f"backward: tensor of shape {self.shape} is not a scalar; "
                                   "pass grad= an array of that shape")
            grad = np.ones_like(self._data)
        else:
            grad = _as_array(grad, self.dtype, "backward")
            if grad.shape != self.shape:
                raise ShapeError(f"backward: grad has shape {grad.shape}, tensor has shape {self.shape}")
        order = toposort(self)
        check_saved(order)  # before any gradient is written: a refused backward changes nothing
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._vjp is None or node._retain:
                node.grad = g.copy() if node.grad is None else node.grad + g
            if node._vjp is None:
                continue
            for parent, pg in zip(node._parents, node._vjp(g)):
                if parent.requires_grad and pg is not None:
                    raw = np.asarray(pg, dtype=parent.dtype)
                    pg = unbroadcast(raw, parent.shape)
                    if pg.shape != parent.shape:  # a wrong vjp would otherwise broadcast on silently
                        raise RuntimeError(f"backward: {node.op} gave a gradient of shape {raw.shape} "
                                           f"for an argument of shape {parent.shape}")
                    prev = grads.get(id(parent))
                    grads[id(parent)] = pg if prev is None else prev + pg

    # --- operators (one-liners over the primitives) --------------------------
    def __add__(self, o): return add(self, o)
    def __radd__(self, o): return add(o, self)
    # A bare scalar is coerced beside self first: alone, neg/power would make it float64 (or int).
    def __sub__(self, o): return add(self, neg(_coerce([self, o], "sub")[1]))
    def __rsub__(self, o): return add(o, neg(self))
    def __mul__(self, o): return mul(self, o)
    def __rmul__(self, o): return mul(o, self)
    def __truediv__(self, o):
        a = _true(self)
        return mul(a, power(_true(_coerce([a, o], "div")[1]), -1.0))

    def __rtruediv__(self, o): return mul(o, power(_true(self), -1.0))
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
            return power(self, float(_as_array(o, what="pow")))
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


def toposort(*roots):
    """Tensors reachable from `roots`, parents before children.

    Iterative depth-first search: an unrolled RNN is far deeper than Python's
    recursion limit.
    """
    order, seen, stack = [], set(), [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in reversed(node._parents) if id(p) not in seen)
    return order


# --- recording, and checking what was recorded ---------------------------------

def record(out, op, parents, vjp, attrs=None):
    """Make `out` the recorded result of `op` over `parents`, differentiated by `vjp`.

    The vjp will read the arrays the forward saw.  So `out`'s array is made
    read-only, and each leaf parent's values are copied (shared by every op that
    records the leaf until its `.data` is handed out again) for `check_saved`."""
    data, saved = out._data, None
    for i, p in enumerate(parents):
        arr = p._data
        if arr is data:  # stop_gradient returns its input: freeze a view of it, not the input's array
            data = out._data = data.view()
        if p._vjp is None and not p._private:
            if p._copy_version != p._version:
                p._copy, p._copy_version = arr.copy(), p._version
            if saved is None:
                saved = []
            saved.append((i, arr, p._copy))
    data.flags.writeable = False
    out.requires_grad = True
    out.op, out.attrs, out._parents, out._vjp, out._saved = op, attrs or {}, tuple(parents), vjp, saved
    return out


def check_saved(order):
    """Raise if a leaf that an op in `order` recorded was changed in place since."""
    seen = set()
    for node in order:
        for i, arr, copy in node._saved or ():
            if id(copy) in seen:
                continue
            seen.add(id(copy))
            if arr.tobytes() != copy.tobytes():  # bitwise: a NaN that stays a NaN is unchanged
                leaf = node._parents[i]
                who = f"the tensor {leaf.name!r}" if leaf.name else "a tensor"
                raise RuntimeError(
                    f"backward: {who} of shape {leaf.shape} (argument {i} of {node.op}) was changed in place after "
                    f"{node.op} recorded it, so its gradients would mix old and new values; recompute the "
                    "forward after changing it, or change a copy")


# --- the primitive machinery -------------------------------------------------

def _coerce(args, op):
    """Tensors from op arguments; bare Python numbers take the dtype of the tensors beside them."""
    like = next((a.dtype for a in args if isinstance(a, Tensor) and a.dtype.kind == "f"), None)
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(a)
        elif isinstance(a, (int, float, bool, np.number)) and like is not None:
            t = Tensor(np.asarray(a, dtype=like))
            t._private = True
            out.append(t)
        else:
            out.append(Tensor(_as_array(a, what=op)))
    return out


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


def _describe(tensors, attrs):
    shapes = ", ".join(str(t.shape) for t in tensors)
    extra = "".join(f", {k}={v!r}" for k, v in attrs.items() if k != "index")
    return f"shapes {shapes}{extra}"


def primitive(name, float_only=False, variadic=False):
    """Register `fn(*arrays, **attrs) -> (out, vjp)` as a recorded engine op.

    vjp(g) returns one gradient per input (None where there is none); the
    shared `unbroadcast` in backward() undoes broadcasting for every rule.
    """
    def deco(fn):
        @functools.wraps(fn)
        def op(*args, **attrs):
            if variadic and len(args) > 1:  # they would be dropped: concatenate([a, b], 1) joined along axis 0
                raise TypeError(f"{name}: pass the tensors as one list and options by keyword (e.g. axis=1), "
                                f"not {len(args) - 1} more positional argument(s)")
            tensors = _coerce(args[0] if variadic else args, name)
            if not tensors:
                raise ValueError(f"{name}: needs at least one tensor")
            if float_only:
                for i, t in enumerate(tensors):
                    if t.dtype.kind != "f":
                        raise TypeError(f"{name}: argument {i} is a {t.dtype} tensor of shape {t.shape}; "
                                        f"{name} needs floating point (use .astype('float64'))")
            try:
                with np.errstate(over="ignore", under="ignore"):
                    data, vjp = fn(*[t._data for t in tensors], **attrs)
            except (ValueError, IndexError) as e:
                raise ShapeError(f"{name}: cannot apply to {_describe(tensors, attrs)}: {e}") from None
            out = Tensor(data)
            # An integer result (astype('int64')) has no gradient, and int tensors never require grad.
            if _GradMode.enabled and out.dtype.kind == "f" and any(t.requires_grad for t in tensors):
                record(out, name, tensors, vjp, attrs)
            return out
        PRIMITIVES[name] = op
        return op
    return deco


# --- primitives -----------------------------------------------------------------

@primitive("add")
def add(a, b):
    np.broadcast_shapes(a.shape, b.shape)
    return a + b, lambda g: (g, g)


@primitive("mul")
def mul(a, b):
    return a * b, lambda g: (g * b, g * a)


@primitive("neg")
def neg(a):
    return -a, lambda g: (-g,)


@primitive("power", float_only=True)
def power(a, exponent):
    out = a ** np.asarray(exponent, dtype=a.dtype)
    return out, lambda g: (g * exponent * a ** np.asarray(exponent - 1, dtype=a.dtype),)


@primitive("pow", float_only=True)
def pow_tensor(a, b):
    """a ** b elementwise with an array exponent; a constant scalar exponent (x ** 2) goes to power.
    Not exp(b log a): that is NaN for a negative base, where (-2) ** 3 is plainly -8."""
    out = a ** b

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            db = g * out * np.log(np.where(out == 0, 1, a))  # d/db a**b = a**b log a; 0 where a**b is 0
            return g * b * a ** (b - 1), db
    return out, vjp


@primitive("exp", float_only=True)
def exp(a):
    out = np.exp(a)
    return out, lambda g: (g * out,)


@primitive("log", float_only=True)
def log(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a)
    return out, lambda g: (g / a,)


@primitive("tanh", float_only=True)
def tanh(a):
    out = np.tanh(a)
    return out, lambda g: (g * (1 - out * out),)


@primitive("sigmoid", float_only=True)
def sigmoid(a):
    e = np.exp(-np.abs(a))  # never overflows
    out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
    return out, lambda g: (g * out * (1 - out),)


@primitive("relu")
def relu(a):
    return np.maximum(a, 0), lambda g: (g * (a > 0),)


@primitive("mod", float_only=True)
def mod(a, b):
    """a % b as NumPy (the sign of b); between its jumps d/da = 1 and d/db = -floor(a / b)."""
    return np.mod(a, b), lambda g: (g, -g * np.floor_divide(a, b))


# Comparisons give 0/1 masks in the inputs' float dtype, as recorded ops with no gradient: a traced
# step can switch units on and off (a clocked unit reads `mg.equal(t % period, 0)`) and be run again.
@primitive("equal", float_only=True)
def equal(a, b):
    return (a == b).astype(np.result_type(a, b)), lambda g: (None, None)


@primitive("less", float_only=True)
def less(a, b):
    return (a < b).astype(np.result_type(a, b)), lambda g: (None, None)


def onehot(index, depth, dtype="float64"):
    """Integer class indices -> one-hot rows (a new last axis of `depth`); no gradient."""
    return _onehot(index, depth=int(depth), dtype=np.dtype(dtype).name)


def sample_onehot(logits, seed=0):
    """One-hot of a class drawn from softmax(logits) along the last axis; see _sample_onehot."""
    return _sample_onehot(logits, seed=int(seed))


@primitive("onehot")
def _onehot(index, depth, dtype="float64"):
    if index.dtype.kind not in "iu":
        raise TypeError(f"onehot: index must hold integers, got {index.dtype}")
    if index.size and (index.min() < 0 or index.max() >= depth):
        raise ValueError(f"indices must lie in [0, {depth}), got values in [{index.min()}, {index.max()}]")
    return np.eye(depth, dtype=dtype)[index], lambda g: (None,)


@primitive("argmax_onehot", float_only=True)
def argmax_onehot(a):
    """One-hot of the largest entry along the last axis (the first of ties); no gradient."""
    return np.eye(a.shape[-1], dtype=a.dtype)[a.argmax(axis=-1)], lambda g: (None,)


@primitive("sample_onehot", float_only=True)
def _sample_onehot(logits, seed=0):
    """One-hot of a class drawn from softmax(logits) along the last axis, by inverse CDF on uniforms
    from numpy's default_rng(seed); no gradient."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    u = np.random.default_rng(seed).random(logits.shape[:-1] + (1,))
    k = np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)
    return np.eye(logits.shape[-1], dtype=logits.dtype)[k], lambda g: (None,)


def _expand(g, shape, axis, keepdims):
    """Put the reduced axes back so `g` broadcasts against the input."""
    if axis is not None and not keepdims:
        g = np.expand_dims(g, tuple(ax % len(shape) for ax in np.atleast_1d(axis)))
    return np.broadcast_to(g.reshape(g.shape if axis is not None or keepdims else (1,) * len(shape)), shape)


@primitive("sum")
def sum(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims), lambda g: (_expand(g, a.shape, axis, keepdims),)


@primitive("max")
def max(a, axis=None, keepdims=False):
    out = a.max(axis=axis, keepdims=keepdims)
    mask = a == _expand(out, a.shape, axis, keepdims)
    share = mask / mask.sum(axis=axis, keepdims=True)  # ties split the gradient evenly
    return out, lambda g: (_expand(g, a.shape, axis, keepdims) * share,)


@primitive("reshape")
def reshape(a, shape):
    return a.reshape(shape), lambda g: (g.reshape(a.shape),)


@primitive("transpose")
def transpose(a, axes=None):
    inverse = None if axes is None else np.argsort([ax % a.ndim for ax in axes])  # axes may be negative
    return a.transpose(axes), lambda g: (g.transpose(inverse),)


@primitive("getitem")
def getitem(a, index):
    def vjp(g):
        full = np.zeros_like(a)
        np.add.at(full, index, g)  # repeated integer indices accumulate
        return (full,)
    return a[index], vjp


@primitive("pick")
def pick(a, index):
    """a[..., index]: from each row of `a` along its last axis, the entry `index` names (class indices).

    index has a's shape without the last axis; its values get no gradient.  It is an argument, not an
    attribute, so a traced graph takes new targets as an input instead of keeping the old ones."""
    if index.dtype.kind not in "iu":
        raise TypeError(f"pick: index must hold integers (class indices), got {index.dtype}")
    if index.shape != a.shape[:-1]:
        raise ValueError(f"index must have shape {a.shape[:-1]} (a's without its last axis), got {index.shape}")
    if index.size and (index.min() < 0 or index.max() >= a.shape[-1]):
        raise ValueError(f"indices must lie in [0, {a.shape[-1]}), got values in [{index.min()}, {index.max()}]")
    rows = np.indices(index.shape, sparse=True)
    out = a[(*rows, index)]

    def vjp(g):
        full = np.zeros_like(a)
        full[(*rows, index)] = g  # each row names one entry: no two writes meet
        return full, None
    return out, vjp


@primitive("concatenate", variadic=True)
def concatenate(*arrays, axis=0):
    cuts = np.cumsum([x.shape[axis] for x in arrays])[:-1]
    return np.concatenate(arrays, axis=axis), lambda g: tuple(np.split(g, cuts, axis=axis))


@primitive("stop_gradient")
def stop_gradient(a):
    # Unlike detach(), a recorded op: a traced step that cuts a gradient can be evaluated again.
    return a, lambda g: (None,)


@primitive("astype")
def astype(a, dtype):
    return a.astype(dtype), lambda g: (g.astype(a.dtype),)


@primitive("matmul")
def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs at least 1-d operands; use * for scalars")
    out = np.matmul(a, b)

    def vjp(g):
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g.reshape(g.shape[:-1] + (1,) + g.shape[-1:]) if a.ndim == 1 else g
        g2 = g2[..., None] if b.ndim == 1 else g2
        ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
        gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
        ga = ga[..., 0, :] if a.ndim == 1 else ga
        gb = gb[..., 0] if b.ndim == 1 else gb
        return ga, gb
    return out, vjp
