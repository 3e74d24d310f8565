"""What an engine op is: one `Primitive` record, and how it is called and recorded.

A primitive keeps in one place everything the project knows about an op:

    forward(*arrays, **attrs) -> array        on NumPy arrays
    vjp(g, out, *inputs, **attrs) -> grads    one per input (None where there is none), written
                                              with `ops` — so it runs on plain arrays in an ordinary
                                              backward(), and on Tensors, recorded, when gradients of
                                              gradients are wanted
    scalar(*args) -> str                      for element-wise ops: the forward on one element, as
    partials(g, out, *args) -> strs           the kernel generator emits it (Python that Numba
                                              compiles; `one`, `zero` are numbers of the kernel's
                                              dtype), and each argument's term of the gradient (None
                                              where there is none).  Each gets, by keyword, the op's
                                              attributes it names, and `const`: const(2.5) is the
                                              name under which the kernel reads that number
    saves=True                                the forward returns (array, residuals): what its vjp
                                              would otherwise compute again (a softmax), handed to
                                              the vjp as `saved=` by backward() — and not when a
                                              recorded backward runs it on tensors

Calling a primitive on tensors runs its forward and, when any input requires
grad, records it (`minigrad.tensor.record`) with its VJP rule and the arrays
the forward saw: backward() runs the rule on those arrays, a recorded backward
(create_graph=True) on the tensors.  `ops.<name>` calls the same
primitive on whatever it is given: arrays in, arrays out, nothing recorded;
tensors in, the engine op.  The shared `unbroadcast` in backward() undoes
broadcasting for every rule.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from .errors import ShapeError
from .tensor import _KEPT, Tensor, _GradMode, _as_array, record

try:  # NumPy keeps its floating-point error state in a context variable (NumPy >= 2)
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
except ImportError:  # another NumPy: the public context manager, ~1 us dearer per op
    _extobj_contextvar = None


class _QuietStates(dict):
    """NumPy error state -> the error state a forward runs in, entered from it: overflow and underflow
    give inf and 0 without a warning, as inside `np.errstate(over="ignore", under="ignore")` — whose
    enter and exit cost more than a small op's arithmetic (1.4 us against 0.5).  Derived once per state
    it is entered from (`_make_extobj` starts from the current one, as errstate does), so a user's own
    errstate or seterr is honoured; a look-up that finds it is one dict subscript, in C."""

    def __missing__(self, current):
        if len(self) > 32:  # each np.errstate makes a new state: keep the table small
            self.clear()
        state = self[current] = _make_extobj(over="ignore", under="ignore")
        return state


_QUIET = _QuietStates()


def _forward_quietly(forward, arrays, attrs):
    """forward(*arrays, **attrs) in the quiet error state (see _QuietStates)."""
    if _extobj_contextvar is None:
        with np.errstate(over="ignore", under="ignore"):
            return forward(*arrays, **attrs)
    token = _extobj_contextvar.set(_QUIET[_extobj_contextvar.get()])
    try:
        return forward(*arrays, **attrs)
    finally:
        _extobj_contextvar.reset(token)


_new = object.__new__
PRIMITIVES: dict = {}  # op name -> its Primitive, so a traced graph can be evaluated again


class Primitive:
    """One engine op; see the module docstring.  Register with `@primitive(name, ...)` on the forward,
    then `@that.vjp` on the vector-Jacobian product."""

    def __init__(self, name, forward, *, float_only=False, variadic=False, scalar=None, partials=None,
                 saves=False):
        self.name, self.forward = name, forward
        self.float_only, self.variadic, self.saves = float_only, variadic, saves
        self.scalar, self.partials = scalar, partials
        self.vjp_rule = None
        self.__doc__, self.__name__ = forward.__doc__, name
        PRIMITIVES[name] = self
        ops.__dict__.pop(name, None)  # a redefined op: `ops` must call the new one

    def vjp(self, rule):
        self.vjp_rule = rule
        return rule

    @property
    def elementwise(self):
        """Fused by the kernel generator: it knows the op's scalar forms."""
        return self.scalar is not None

    def scalar_form(self, args, attrs, const):
        """The forward on one element: Python source over the variable names `args`."""
        return self.scalar(*args, **_named(self.scalar, attrs, const))

    def partial_forms(self, g, out, args, attrs, const):
        """Each argument's term of the gradient, given the names of g, the output and the arguments."""
        return tuple(self.partials(g, out, *args, **_named(self.partials, attrs, const)))

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **attrs):
        name = self.name
        if self.variadic:
            if len(args) > 1:  # they would be dropped: concatenate([a, b], 1) joined along axis 0
                raise TypeError(f"{name}: pass the tensors as one list and options by keyword (e.g. axis=1), "
                                f"not {len(args) - 1} more positional argument(s)")
            tensors = coerce(args[0], name)
        else:
            tensors = args
            for a in args:  # the common case, tensors only, needs no coercion
                if not isinstance(a, Tensor):
                    tensors = coerce(args, name)
                    break
        if not tensors:
            raise ValueError(f"{name}: needs at least one tensor")
        arrays = [t._data for t in tensors]
        if self.float_only:
            for i, arr in enumerate(arrays):
                if arr.dtype.kind != "f":
                    raise TypeError(f"{name}: argument {i} is a {arr.dtype} tensor of shape {arr.shape}; "
                                    f"{name} needs floating point (use .astype('float64'))")
        try:
            data = _forward_quietly(self.forward, arrays, attrs)
        except (ValueError, IndexError) as e:
            raise ShapeError(f"{name}: cannot apply to {_describe(tensors, attrs)}: {e}") from None
        if self.saves:
            data, saved = data
        if type(data) is np.ndarray and data.dtype in _KEPT:  # the common case: what Tensor(data) would make,
            out = _new(Tensor)                                # without converting and checking it again
            out._data = data
        else:
            out = Tensor(data)
        # An integer result (astype('int64')) has no gradient, and int tensors never require grad.
        if _GradMode.enabled and out._data.dtype.kind == "f":
            for t in tensors:
                if t.requires_grad:
                    rule = self.vjp_rule
                    vjp = functools.partial(rule, saved=saved) if self.saves else rule
                    record(out, name, tensors, vjp, attrs, rule, (data, *arrays))
                    break
        return out


_KEYWORDS: dict = {}


def _named(fn, attrs, const):
    """The keyword arguments `fn` names, among the op's attributes and `const`."""
    names = _KEYWORDS.get(fn)
    if names is None:
        params = inspect.signature(fn).parameters.values()
        names = _KEYWORDS[fn] = (None if any(p.kind == p.VAR_KEYWORD for p in params)
                                 else {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)})
    given = dict(attrs, const=const)
    return given if names is None else {k: v for k, v in given.items() if k in names}


def primitive(name, *, float_only=False, variadic=False, scalar=None, partials=None, saves=False):
    """Decorator: make `forward(*arrays, **attrs) -> array` the engine op `name` (see Primitive)."""
    return lambda forward: Primitive(name, forward, float_only=float_only, variadic=variadic, scalar=scalar,
                                     partials=partials, saves=saves)


class _Ops:
    """`ops.exp(x)`: the primitive on arrays (NumPy, nothing recorded) or on tensors (the engine op)."""

    def __getattr__(self, name):
        prim = PRIMITIVES.get(name)
        if prim is None:
            raise AttributeError(f"ops has no primitive {name!r}")

        forward, variadic = prim.forward, prim.variadic
        if prim.saves:  # on arrays the output alone; what it saves is for a recorded call's backward
            forward = lambda *a, **k: prim.forward(*a, **k)[0]  # noqa: E731

        def call(*args, **attrs):  # on arrays this runs in every backward: kept to a loop and a call
            for a in (args[0] if variadic else args):
                if isinstance(a, Tensor):
                    return prim(*args, **attrs)
            return forward(*(args[0] if variadic else args), **attrs)
        call.__name__ = name
        setattr(self, name, call)  # made once: later look-ups are plain attributes
        return call


ops = _Ops()


def unbroadcast(grad, shape):
    """Sum `grad` back down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    if grad.ndim > len(shape):
        grad = ops.sum(grad, axis=tuple(range(grad.ndim - len(shape))))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    return ops.sum(grad, axis=axes, keepdims=True) if axes else grad


# --- arguments ------------------------------------------------------------------------

def coerce(args, op):
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


def _describe(tensors, attrs):
    shapes = ", ".join(str(t.shape) for t in tensors)
    extra = "".join(f", {k}={v!r}" for k, v in attrs.items() if k != "index")
    return f"shapes {shapes}{extra}"
