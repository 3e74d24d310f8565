"""What a cell's traced step may read besides its parameters' values: a key that changes when any of it does.

The numba backend compiles a cell's traced step once and reuses the kernels
while this key is unchanged, so everything the step can read from the cell is
in it:

    plain values (numbers, strings, dtypes)      by value
    arrays and constant tensors                  by content: an in-place edit counts
    functions, methods, classes, other callables by identity
    lists, tuples, dicts, sets, sub-modules,     by what they hold, recursively
    other objects with attributes
    parameters                                   by shape and dtype (their values reach the kernel on every call)
    the cell's class, and the attributes of its classes outside this package

Not watched: module globals, and the variables a function closes over.

``fingerprint(cell) -> (key, arrays)``: the hashable key, and the arrays whose
content it stands for (compared with `same_arrays` against copies kept beside
the kernels, rather than hashed on every call).  `kept_while_unchanged` is the
cache built on them: what was made from a cell, made again once the cell changed.
"""
from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType

import numpy as np

from minigrad import Tensor
from minigrad.nn import Module, Parameter

from ..cell import Cell

_PLAIN = (int, float, complex, str, bytes, bool, type(None), np.generic, np.dtype, range, slice, type(Ellipsis))


def fingerprint(cell):
    arrays, seen = [], set()
    own = []
    for cls in type(cell).__mro__:
        if not issubclass(cls, Cell) or cls.__module__.startswith("rnn."):  # the package's own: not edited at run time
            break
        own.append(_key(cls.__dict__, arrays, seen))
    return (type(cell), tuple(own), _key(cell.__dict__, arrays, seen)), arrays


def kept_while_unchanged(store, cell, key, make, keep=8):
    """make() for `cell` under `key`, kept in `store` (a WeakKeyDictionary: cell -> its entries) and
    reused until the cell's fingerprint changes; the `keep` latest entries per cell."""
    per = store.get(cell)
    if per is None:  # not setdefault: that makes an OrderedDict and a weak reference on every call
        per = store[cell] = OrderedDict()
    fkey, arrays = fingerprint(cell)
    got = per.get((key, fkey))
    if got is None or not same_arrays(arrays, got[1]):
        got = per[(key, fkey)] = (make(), [a.copy() for a in arrays])
        while len(per) > keep:
            per.popitem(last=False)
    return got[0]


def same_arrays(arrays, copies):
    return all(a.shape == c.shape and a.dtype == c.dtype and _bytes_equal(a, c) for a, c in zip(arrays, copies))


def _bytes_equal(a, b):
    return a.tobytes() == b.tobytes()  # bitwise: a NaN that stays a NaN is unchanged


_EXACT_PLAIN = frozenset(_PLAIN)


def _key(v, arrays, seen):
    t = type(v)
    if t in _EXACT_PLAIN:  # the common cases first: this runs on every rnn.run call
        return v
    if t is Parameter:
        return ("parameter", v._data.shape, v._data.dtype, v.requires_grad)
    if t is dict and id(v) not in seen:  # a cell's own attributes: their plain values without a call each
        seen.add(id(v))
        return ("dict", tuple((k, x if type(x) in _EXACT_PLAIN else _key(x, arrays, seen)) for k, x in v.items()
                              if not (isinstance(k, str) and k.startswith("__"))))
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, Tensor):
        if isinstance(v, Parameter):
            return ("parameter", v._data.shape, v._data.dtype, v.requires_grad)
        v = v._data
    if isinstance(v, np.ndarray):
        arrays.append(v)
        return ("array", v.shape, v.dtype, len(arrays) - 1)
    if id(v) in seen:  # a cycle, or an object met before: its content is in the key already
        return ("seen", id(v))
    if isinstance(v, (dict, MappingProxyType)):
        seen.add(id(v))
        # in the dict's own order: attributes set in another order only cost a trace
        return ("dict", tuple((k, _key(x, arrays, seen)) for k, x in v.items()
                              if not (isinstance(k, str) and k.startswith("__"))))
    if isinstance(v, (list, tuple)):
        seen.add(id(v))
        return (type(v).__name__, tuple(_key(x, arrays, seen) for x in v))
    if isinstance(v, (set, frozenset)):
        return (type(v).__name__, tuple(sorted(map(repr, v))))
    if callable(v) and not isinstance(v, Module):
        return _identity(v)
    attrs = getattr(v, "__dict__", None)
    if attrs is not None:
        seen.add(id(v))
        return (type(v), _key(attrs, arrays, seen))
    return _identity(v)


def _identity(v):
    try:
        hash(v)
        return ("object", v)  # the object itself: compared by identity, and kept alive so its id is not reused
    except TypeError:
        return ("object", type(v), id(v))
