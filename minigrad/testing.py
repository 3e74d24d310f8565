"""Hypothesis strategies for property-based gradient checks.

Example — check your own op against finite differences on random shapes::

    from hypothesis import given
    import minigrad as mg
    from minigrad.testing import broadcastable_shapes, tensors

    @given(broadcastable_shapes().flatmap(
        lambda ab: tensors(ab[0]).flatmap(lambda a: tensors(ab[1]).map(lambda b: (a, b)))))
    def test_softplus_times(ab):
        a, b = ab
        assert mg.gradcheck(lambda a, b: (a.exp() + 1).log() * b, [a, b])

Values are bounded (default [-2, 2]) and, where an op has kinks, kept a
margin away from them (`away_from=(0.0,)` for relu); `unique=True` avoids the
ties at which `max` is not differentiable.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .tensor import Tensor


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes, scalars (0-d) included by default."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(max_dims=3, min_side=1, max_side=4):
    """Pairs of shapes that NumPy broadcasts together, e.g. ((3, 1), (4,))."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=max_dims, min_side=min_side,
                                             max_side=max_side).map(lambda bs: bs.input_shapes)


def axes(ndim):
    """A reduction `axis` argument for an array of `ndim` dims: None, an int or a tuple."""
    if ndim == 0:
        return st.none()
    ints = st.integers(-ndim, ndim - 1)
    tuples = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    return st.one_of(st.none(), ints, tuples)


def _push_away(x, kinks, margin):
    for k in kinks:
        near = np.abs(x - k) < margin
        x = np.where(near, k + np.where(x >= k, margin, -margin), x)
    return x


def _spread(a, low, high, kinks=(), margin=0.0):
    # Keep the drawn order, but space the values evenly over [low, high] minus the bands within
    # `margin` of each kink, so no two are closer than (free length)/(2n) and none is near a kink.
    bands = []
    for k in sorted(kinks):
        b0, b1 = max(low, _edge(k, -margin)), min(high, _edge(k, margin))
        if b0 < b1:
            if bands and b0 <= bands[-1][1]:
                bands[-1] = (bands[-1][0], max(bands[-1][1], b1))
            else:
                bands.append((b0, b1))
    free = (high - low) - sum(b1 - b0 for b0, b1 in bands)
    if a.size < 2:  # nothing to space: keep the drawn value's place in the free length
        x = low + (a - low) / (high - low) * free
    else:
        rank = np.argsort(np.argsort(a, axis=None)).reshape(a.shape)
        step = free / a.size
        x = low + (rank + 0.3) * step + (a - low) / (high - low) * 0.4 * step
    for b0, b1 in bands:  # in increasing order: skip each band (rounding must not land inside it)
        x = np.where(x >= b0, np.maximum(x + (b1 - b0), b1), x)
    return x


def _edge(k, margin):
    # k + margin, nudged outwards until it is at least |margin| from k in floating point too
    # (0.5 + 0.2 - 0.5 is 0.19999999999999996)
    e = k + margin
    while abs(e - k) < abs(margin):
        e = np.nextafter(e, np.inf if margin > 0 else -np.inf)
    return e


def arrays(shape, *, low=-2.0, high=2.0, dtype=np.float64, away_from=(), margin=0.05, unique=False):
    """Float arrays with values in [low, high], at least `margin` from every kink in `away_from`.

    unique=True makes all elements clearly distinct (no ties for max), kinks avoided too.
    """
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    base = hnp.arrays(np.float64, shape, elements=elements, unique=unique)
    if unique:  # pushing values out of a band would put the ones in it on its edge: ties
        return base.map(lambda a: _spread(a, low, high, away_from, margin).astype(dtype))
    return base.map(lambda a: _push_away(a, away_from, margin).astype(dtype))


def tensors(shape=None, *, requires_grad=True, **kw):
    """Tensors over `arrays(...)` (a random shape from `shapes()` when none is given)."""
    shape_st = shapes() if shape is None else st.just(shape)
    return shape_st.flatmap(lambda s: arrays(s, **kw)).map(lambda a: Tensor(a, requires_grad=requires_grad))
