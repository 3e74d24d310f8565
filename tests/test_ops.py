"""Every op, one table line each: forward against NumPy, gradient against gradcheck.

A line is (name, strategy, op, reference).  The strategy draws
(float arrays, keyword arguments); the float arrays become tensors that
require grad, the keyword arguments (axes, indices, targets, Python scalars)
go to both the op and its NumPy reference unchanged.
"""
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.testing import arrays, axes, broadcastable_shapes, shapes, tensors

# --- strategies for the table ------------------------------------------------------

def one(shape_st=None, **kw):
    return (shape_st if shape_st is not None else shapes()).flatmap(lambda s: arrays(s, **kw)).map(
        lambda a: ((a,), {}))


def two(a_kw=None, b_kw=None):
    """Two arrays of mutually broadcastable shapes."""
    return broadcastable_shapes().flatmap(
        lambda ab: st.tuples(arrays(ab[0], **(a_kw or {})), arrays(ab[1], **(b_kw or {})))).map(lambda xs: (xs, {}))


def with_scalar(scalars=st.floats(-2, 2), **kw):
    """One array and a Python float `c` for the reflected / scalar forms."""
    return st.tuples(shapes().flatmap(lambda s: arrays(s, **kw)), scalars).map(lambda t: ((t[0],), {"c": t[1]}))


def reduction(unique=False):
    def per_shape(s):
        return st.tuples(arrays(s, unique=unique), axes(len(s)), st.booleans())
    return shapes().flatmap(per_shape).map(lambda t: ((t[0],), {"axis": t[1], "keepdims": t[2]}))


@st.composite
def matmul_args(draw):
    k, m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcastable_shapes(max_dims=2, max_side=3))
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    a_shape = (k,) if a_vec else batch_a + (m, k)
    b_shape = (k,) if b_vec else batch_b + (k, n)
    return (draw(arrays(a_shape)), draw(arrays(b_shape))), {}


@st.composite
def reshape_args(draw):
    s = draw(shapes())
    size = int(np.prod(s))
    target = draw(st.sampled_from([(-1,), (size,), s[::-1], (1,) + s, s + (1,), (1, -1)]))
    return (draw(arrays(s)),), {"shape": target}


@st.composite
def transpose_args(draw):
    s = draw(shapes(min_dims=1))
    perm = draw(st.permutations(range(len(s))))
    negative = draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s)))
    perm = tuple(p - len(s) if neg else p for p, neg in zip(perm, negative))  # numpy accepts -1 for the last axis
    return (draw(arrays(s)),), {"axes": perm}


@st.composite
def slice_args(draw):
    s = draw(shapes(min_dims=1))
    return (draw(arrays(s)),), {"index": draw(hnp.basic_indices(s))}


@st.composite
def int_index_args(draw):
    s = draw(shapes(min_dims=1))
    # Few distinct positions and up to 6 picks: repeated indices are common.
    index = draw(hnp.integer_array_indices(s, result_shape=hnp.array_shapes(max_dims=2, max_side=3)))
    return (draw(arrays(s)),), {"index": index}


@st.composite
def concat_args(draw):
    base = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(base), len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    xs = []
    for size in sizes:
        s = list(base)
        s[axis] = size
        xs.append(draw(arrays(tuple(s))))
    return tuple(xs), {"axis": axis}


@st.composite
def stack_args(draw):
    s = draw(shapes())
    n = draw(st.integers(1, 3))
    return tuple(draw(arrays(s)) for _ in range(n)), {"axis": draw(st.integers(-len(s) - 1, len(s)))}


@st.composite
def split_args(draw):
    s = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(s), len(s) - 1))
    n = s[axis]
    equal = st.sampled_from([d for d in range(1, n + 1) if n % d == 0])
    cuts = st.lists(st.integers(0, n), max_size=3).map(sorted)
    return (draw(arrays(s)),), {"sections": draw(st.one_of(equal, cuts)), "axis": axis}


@st.composite
def softmax_args(draw):
    s = draw(shapes(min_dims=1))
    return (draw(arrays(s, low=-4, high=4)),), {"axis": draw(st.integers(-len(s), len(s) - 1))}


@st.composite
def cross_entropy_args(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    targets = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return (draw(arrays((n, c), low=-4, high=4)),), {"targets": targets}


@st.composite
def class_scores_args(draw):
    """Logits of any shape (..., C) and class indices of shape (...): softmax_cross_entropy's arguments."""
    s = draw(shapes(min_dims=1))
    targets = draw(hnp.arrays(np.int64, s[:-1], elements=st.integers(0, s[-1] - 1)))
    return (draw(arrays(s, low=-4, high=4)),), {"targets": targets}


@st.composite
def linear_read_out_args(draw):
    """x (N, H), weight (K, H), bias (K,) and class indices (N,): linear_cross_entropy's arguments."""
    n, h, k = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    targets = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return (draw(arrays((n, h), low=-2, high=2)), draw(arrays((k, h), low=-2, high=2)),
            draw(arrays((k,), low=-2, high=2))), {"targets": targets}


def np_softmax_cross_entropy(x, targets):
    return -np.mean(np_pick(scipy.special.log_softmax(x, axis=-1), targets)) if targets.size else np.nan


@st.composite
def pick_args(draw):
    s = draw(shapes(min_dims=1))
    index = draw(hnp.arrays(np.int64, s[:-1], elements=st.integers(0, s[-1] - 1)))
    return (draw(arrays(s)),), {"index": index}


def np_pick(a, index):
    return np.take_along_axis(a, index[..., None], axis=-1)[..., 0]


@st.composite
def mod_args(draw):
    """a % b away from its jumps: a = b (k + f) with f in [0.1, 0.9], so floor(a / b) = k."""
    s = draw(shapes())
    b = draw(arrays(s, low=0.5, high=2.0)) * draw(st.sampled_from([1.0, -1.0]))
    k = draw(hnp.arrays(np.int64, s, elements=st.integers(-3, 3)))
    f = draw(arrays(s, low=0.1, high=0.9))
    return (b * (k + f), b), {}


@st.composite
def equal_args(draw):
    s = draw(shapes())
    b = draw(arrays(s))
    same = draw(hnp.arrays(bool, s))
    return (np.where(same, b, b + 0.75), b), {}


@st.composite
def less_args(draw):
    s = draw(shapes())
    b = draw(arrays(s))
    below = draw(hnp.arrays(bool, s))
    return (np.where(below, b - 0.75, b + 0.75), b), {}


@st.composite
def broadcast_to_args(draw):
    a, b = draw(broadcastable_shapes())
    if draw(st.booleans()):  # one value spread out (a total's gradient): filled, not a NumPy view, when small
        a = (1,) * draw(st.integers(0, len(b)))
    shape = np.broadcast_shapes(a, b)
    if draw(st.booleans()):  # past the size up to which one value is filled
        shape = (draw(st.integers(70, 90)), 70) + shape
    return (draw(arrays(a)),), {"shape": shape}


@st.composite
def mse_args(draw):
    s = draw(shapes())
    return (draw(arrays(s)), draw(arrays(s))), {}


# --- NumPy references ---------------------------------------------------------------

def np_logsumexp(x, axis=-1, keepdims=False):
    return scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)


def np_split(x, sections, axis):
    return np.split(x, sections, axis=axis)


def np_cross_entropy(x, targets):
    return -np.mean(scipy.special.log_softmax(x, axis=1)[np.arange(len(targets)), targets])


POSITIVE = dict(low=0.3, high=3.0)
NONZERO = dict(away_from=(0.0,), margin=0.5)
SCALAR_NONZERO = st.floats(0.5, 2) | st.floats(-2, -0.5)

#        name            inputs                             minigrad                                       numpy
OPS = [
    ("add",             two(),                               lambda a, b: a + b,                            np.add),
    ("sub",             two(),                               lambda a, b: a - b,                            np.subtract),
    ("mul",             two(),                               lambda a, b: a * b,                            np.multiply),
    ("div",             two(b_kw=NONZERO),                   lambda a, b: a / b,                            np.divide),
    ("pow-scalar",      with_scalar(st.floats(-2, 3), **POSITIVE), lambda a, c: a ** c,                     lambda a, c: a ** c),
    ("pow-int",         with_scalar(st.sampled_from([1, 2, 3])), lambda a, c: a ** c,                       lambda a, c: a ** c),
    ("pow-tensor",      two(a_kw=POSITIVE),                  lambda a, b: a ** b,                           np.power),
    ("add-scalar",      with_scalar(),                       lambda a, c: a + c,                            lambda a, c: a + c),
    ("sub-scalar",      with_scalar(),                       lambda a, c: a - c,                            lambda a, c: a - c),
    ("div-scalar",      with_scalar(SCALAR_NONZERO),         lambda a, c: a / c,                            lambda a, c: a / c),
    ("div-int-scalar",  with_scalar(st.sampled_from([-3, 2, 4])), lambda a, c: a / c,                      lambda a, c: a / c),
    ("radd",            with_scalar(),                       lambda a, c: c + a,                            lambda a, c: c + a),
    ("rsub",            with_scalar(),                       lambda a, c: c - a,                            lambda a, c: c - a),
    ("rmul",            with_scalar(),                       lambda a, c: c * a,                            lambda a, c: c * a),
    ("rtruediv",        with_scalar(**NONZERO),              lambda a, c: c / a,                            lambda a, c: c / a),
    ("rpow",            with_scalar(st.floats(0.2, 4)),      lambda a, c: c ** a,                           lambda a, c: c ** a),
    ("matmul",          matmul_args(),                       lambda a, b: a @ b,                            np.matmul),
    ("neg",             one(),                               lambda a: -a,                                  np.negative),
    ("exp",             one(),                               mg.exp,                                        np.exp),
    ("log",             one(**POSITIVE),                     mg.log,                                        np.log),
    ("tanh",            one(),                               mg.tanh,                                       np.tanh),
    ("sigmoid",         one(low=-6, high=6),                 mg.sigmoid,                                    scipy.special.expit),
    ("relu",            one(away_from=(0.0,)),               mg.relu,                                       lambda a: np.maximum(a, 0)),
    ("sum",             reduction(),                         lambda a, **k: a.sum(**k),                     np.sum),
    ("mean",            reduction(),                         lambda a, **k: a.mean(**k),                    np.mean),
    ("max",             reduction(unique=True),              lambda a, **k: a.max(**k),                     np.max),
    ("broadcast_to",    broadcast_to_args(),                 lambda a, shape: mg.broadcast_to(a, shape=shape),
                                                                                           np.broadcast_to),
    ("reshape",         reshape_args(),                      lambda a, shape: a.reshape(shape),             np.reshape),
    ("transpose",       transpose_args(),                    lambda a, axes: a.transpose(*axes),            np.transpose),
    (".T",              one(),                               lambda a: a.T,                                 lambda a: a.T),
    ("getitem-slices",  slice_args(),                        lambda a, index: a[index],                     lambda a, index: a[index]),
    ("getitem-ints",    int_index_args(),                    lambda a, index: a[index],                     lambda a, index: a[index]),
    ("pick",            pick_args(),                         mg.pick,                                       np_pick),
    ("mod",             mod_args(),                          lambda a, b: a % b,                            np.mod),
    ("equal",           equal_args(),                        mg.equal,                                      lambda a, b: (a == b) * 1.0),
    ("less",            less_args(),                         mg.less,                                       lambda a, b: (a < b) * 1.0),
    ("argmax_onehot",   one(shapes(min_dims=1), unique=True), mg.argmax_onehot,
                                                                   lambda a: np.eye(a.shape[-1])[a.argmax(-1)]),
    ("concatenate",     concat_args(),                       lambda *xs, axis: mg.concatenate(list(xs), axis=axis),
                                                                                           lambda *xs, axis: np.concatenate(xs, axis=axis)),
    ("stack",           stack_args(),                        lambda *xs, axis: mg.stack(xs, axis=axis),     lambda *xs, axis: np.stack(xs, axis=axis)),
    ("split",           split_args(),                        lambda a, **k: tuple(mg.split(a, **k)),        np_split),
    ("softmax",         softmax_args(),                      mg.softmax,                                    scipy.special.softmax),
    ("log_softmax",     softmax_args(),                      mg.log_softmax,                                scipy.special.log_softmax),
    ("logsumexp",       softmax_args(),                      mg.logsumexp,                                  np_logsumexp),
    ("cross_entropy",   cross_entropy_args(),                mg.cross_entropy,                              np_cross_entropy),
    ("softmax_cross_entropy", class_scores_args(),           mg.softmax_cross_entropy,                      np_softmax_cross_entropy),
    ("linear_cross_entropy", linear_read_out_args(),         mg.linear_cross_entropy,
                                                   lambda x, w, b, targets: np_softmax_cross_entropy(x @ w.T + b, targets)),
    ("mse_loss",        mse_args(),                          mg.mse_loss,                                   lambda p, t: np.mean((p - t) ** 2)),
]
OP_IDS = [name for name, *_ in OPS]
NO_GRADIENT = {"equal", "less", "argmax_onehot"}  # masks and choices: recorded, but nothing flows back


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("name, inputs, op, ref", OPS, ids=OP_IDS)
@given(data=st.data())
def test_op_matches_numpy_and_gradcheck(name, inputs, op, ref, data):
    arrs, kw = data.draw(inputs, label="inputs")
    xs = [mg.tensor(a, requires_grad=True) for a in arrs]

    outs, expected = _outputs(op(*xs, **kw)), _outputs(ref(*[a.copy() for a in arrs], **kw))
    assert len(outs) == len(expected)
    for out, exp in zip(outs, expected):
        assert isinstance(out, mg.Tensor)
        assert out.shape == np.shape(exp)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out.data, exp, rtol=1e-10, atol=1e-12)
    # The inputs are untouched by the forward pass.
    for x, a in zip(xs, arrs):
        np.testing.assert_array_equal(x.data, a)

    assert mg.gradcheck(lambda *ts: op(*ts, **kw), xs)


@pytest.mark.parametrize("name, inputs, op, ref", OPS, ids=OP_IDS)
@given(data=st.data())
def test_float32_stays_float32(name, inputs, op, ref, data):
    """float32 in, float32 out and float32 gradients, Python scalars included."""
    arrs, kw = data.draw(inputs, label="inputs")
    xs = [mg.tensor(a.astype(np.float32), requires_grad=True) for a in arrs]
    outs = _outputs(op(*xs, **kw))
    for out, exp in zip(outs, _outputs(ref(*arrs, **kw))):
        assert out.dtype == np.float32, f"{name} gave {out.dtype}"
        np.testing.assert_allclose(out.data, exp, rtol=1e-4, atol=1e-4)
    total = outs[0].sum()
    for o in outs[1:]:
        total = total + o.sum()
    assert total.dtype == np.float32
    total.backward()
    for x in xs:
        if name in NO_GRADIENT:
            assert x.grad is None
        else:
            assert x.grad is not None and x.grad.dtype == np.float32 and x.grad.shape == x.shape


def test_table_covers_the_issue():
    required = {"add", "sub", "mul", "div", "pow-scalar", "pow-tensor", "radd", "rsub", "rmul", "rtruediv",
                "rpow", "matmul", "neg", "exp", "log", "tanh", "sigmoid", "relu", "sum", "mean", "max",
                "reshape", "transpose", ".T", "getitem-slices", "getitem-ints", "concatenate", "stack",
                "split", "softmax", "log_softmax", "cross_entropy", "mse_loss"}
    assert required <= set(OP_IDS)
    assert len(OP_IDS) == len(set(OP_IDS))


# --- special cases the table's ranges do not reach -------------------------------------------

@given(hnp.arrays(np.int64, hnp.array_shapes(max_dims=2), elements=st.integers(0, 4)))
def test_onehot_of_class_indices(index):
    out = mg.onehot(index, 5)
    assert out.shape == index.shape + (5,) and out.dtype == np.float64
    np.testing.assert_array_equal(out.data.argmax(-1), index)
    np.testing.assert_array_equal(out.data.sum(-1), 1.0)
    with pytest.raises(mg.ShapeError, match=r"onehot.*\[0, 5\)"):
        mg.onehot(index + 5, 5)


def test_sample_onehot_draws_from_the_softmax():
    logits = mg.tensor(np.log([[0.1, 0.2, 0.7]]), requires_grad=True)
    draws = np.array([mg.sample_onehot(logits, seed=s).data[0] for s in range(3000)])
    assert (draws.sum(-1) == 1).all()
    freq = draws.mean(0)
    assert np.all(np.abs(freq - [0.1, 0.2, 0.7]) < 4 * np.sqrt(0.25 / 3000))  # within 4 standard errors
    again = mg.sample_onehot(logits, seed=7)
    np.testing.assert_array_equal(again.data, mg.sample_onehot(logits, seed=7).data)  # the seed fixes the draw
    (again * mg.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert logits.grad is None  # a choice: nothing flows back


@pytest.mark.parametrize("x", [np.array([2.0, 3.0, 1.5, 2.0]), np.array([[1.0, 4.0], [4.0, 0.5]])])
def test_repeated_integer_indices_accumulate(x):
    t = mg.tensor(x, requires_grad=True)
    idx = np.array([1, 1, 0, 1])
    y = t[idx] if x.ndim == 1 else t[idx, np.array([0, 1, 1, 1])]
    weights = np.arange(1.0, 5.0)
    (y * weights).sum().backward()
    expected = np.zeros_like(x)
    np.add.at(expected, idx if x.ndim == 1 else (idx, np.array([0, 1, 1, 1])), weights)
    np.testing.assert_array_equal(t.grad, expected)


def test_matmul_batched_broadcasting_shapes():
    a = mg.tensor(np.random.default_rng(0).normal(size=(2, 1, 3, 4)), requires_grad=True)
    b = mg.tensor(np.random.default_rng(1).normal(size=(5, 4, 2)), requires_grad=True)
    out = a @ b
    assert out.shape == (2, 5, 3, 2)
    np.testing.assert_allclose(out.data, a.data @ b.data)
    assert mg.gradcheck(lambda a, b: a @ b, [a, b])


@given(arrays((5,), low=-1e4, high=1e4))
def test_sigmoid_stable_for_huge_inputs(a):
    a = np.concatenate([a, [1e4, -1e4, 800.0, -800.0, 0.0]])
    for dtype in (np.float64, np.float32):
        x = mg.tensor(a.astype(dtype), requires_grad=True)
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error")
            y = mg.sigmoid(x)
            y.sum().backward()
        assert y.dtype == dtype and x.grad.dtype == dtype
        assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(x.grad))
        assert y.data[-5] == 1.0 and y.data[-4] == 0.0  # exact limits
        expected = scipy.special.expit(a.astype(dtype))
        # Below the smallest normal number SciPy's 1/(1+exp(-x)) flushes to 0 where ours keeps the subnormal.
        np.testing.assert_allclose(y.data, expected, rtol=1e-6 if dtype == np.float32 else 1e-14,
                                   atol=np.finfo(dtype).tiny)
        np.testing.assert_allclose(x.grad, expected * (1 - expected), rtol=1e-5, atol=1e-30)
    assert mg.gradcheck(mg.sigmoid, [mg.tensor(a, requires_grad=True)])


@given(shapes(min_dims=1).flatmap(lambda s: st.tuples(arrays(s, low=-3, high=3), st.integers(-len(s), len(s) - 1))),
       st.sampled_from([1e4, -1e4, 1e6]))
def test_log_softmax_stable_for_large_logits(arg, offset):
    a, axis = arg
    x = mg.tensor(a + offset, requires_grad=True)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = mg.log_softmax(x, axis=axis)
        p = mg.softmax(x, axis=axis)
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(p.data))
    # Shifting all logits by a constant changes nothing.
    np.testing.assert_allclose(y.data, scipy.special.log_softmax(a, axis=axis), atol=1e-9)
    np.testing.assert_allclose(p.data.sum(axis=axis), 1.0, rtol=1e-9)  # x - lse at 1e6 keeps ~1e-10
    if abs(offset) < 1e5:
        # logits up to 1e5: central differences round at ~1e-16 * 1e5 / eps, so a coarser step and tolerance
        assert mg.gradcheck(lambda x: mg.log_softmax(x, axis=axis), [x], eps=1e-4, atol=1e-6, rtol=1e-5)


def test_cross_entropy_stable_for_large_logits():
    logits = mg.tensor(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 3.0]]), requires_grad=True)
    targets = np.array([2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = mg.cross_entropy(logits, targets)
        loss.backward()
    expected = np_cross_entropy(logits.data, targets)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    assert np.all(np.isfinite(logits.grad))


@pytest.mark.parametrize("expr", ["x + 2", "2 + x", "x - 2", "2 - x", "x * 2", "2 * x", "x / 2", "2 / x",
                                  "x ** 2", "2 ** x", "x + 2.5", "x / 2.5", "x - np.float64(1)", "x.mean()"])
def test_python_scalars_do_not_upcast_float32(expr):
    x = mg.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), requires_grad=True)
    y = eval(expr)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


@given(a=broadcastable_shapes().flatmap(lambda ab: st.tuples(
    arrays(ab[0], low=-3, high=3, away_from=(0.0,), margin=0.3),
    hnp.arrays(np.float64, ab[1], elements=st.sampled_from([1.0, 2.0, 3.0])))))
def test_pow_with_an_array_exponent_takes_negative_bases(a):
    """(-2) ** 3 is -8: an array exponent must not go through exp(b log a), NaN for a < 0.  The
    base's gradient is b a**(b-1) there too; the exponent's, a**b log a, is undefined (NaN) for
    a < 0 and checked against central differences where a > 0."""
    base, expo = a
    y = mg.tensor(base) ** mg.tensor(expo)
    np.testing.assert_allclose(y.data, np.power(base, expo), rtol=1e-12)
    assert mg.gradcheck(lambda t: t ** expo, [mg.tensor(base, requires_grad=True)])
    assert mg.gradcheck(lambda t: np.abs(base) ** t, [mg.tensor(expo, requires_grad=True)])


@pytest.mark.parametrize("expo", [[1, 2, 3], np.array([1, 2, 3]), np.array([True, False, True])])
def test_integer_exponent_arrays_take_the_bases_float_dtype(expo):
    x = mg.tensor(np.array([1.5, -2.0, 0.5], dtype=np.float32), requires_grad=True)
    y = x ** expo
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, x.data ** np.asarray(expo, dtype=np.float32), rtol=1e-6)


@pytest.mark.parametrize("expr", ["i / 2", "3 / i", "i / j", "x / i", "i / x", "i / 2.5"])
def test_true_division_of_integer_tensors_is_numpys(expr):
    """An integer tensor divides like a NumPy array (true division to floats), not with an error
    from inside power."""
    arrays_ = dict(i=np.array([1, 2, 7]), j=np.array([4, 8, 2]), x=np.array([0.5, 2.0, 4.0], np.float32))
    got = eval(expr, {k: mg.tensor(v) for k, v in arrays_.items()})
    want = eval(expr, dict(arrays_))
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got.data, want, rtol=1e-6)


def test_float64_and_int_scalars_behave_like_numpy():
    x = mg.tensor([1.0, 2.0, 4.0])
    for c in (2, 2.0, np.float64(2.0)):
        np.testing.assert_array_equal((x / c).data, x.data / c)
        np.testing.assert_array_equal((x - c).data, x.data - c)
        np.testing.assert_array_equal((c - x).data, c - x.data)


# --- the strategies in minigrad.testing --------------------------------------------------------

@given(broadcastable_shapes())
def test_broadcastable_shapes_broadcast(ab):
    a, b = ab
    np.broadcast_shapes(a, b)
    assert len(a) <= 3 and len(b) <= 3 and all(1 <= s <= 4 for s in a + b)


@given(shapes().flatmap(lambda s: st.tuples(st.just(s), axes(len(s)))))
def test_axes_are_valid_for_their_shape(arg):
    s, axis = arg
    np.zeros(s).sum(axis=axis)  # raises if the axis is out of range or repeated


@given(shapes().flatmap(lambda s: arrays(s, away_from=(0.0, 1.0), margin=0.1)))
def test_arrays_keep_away_from_kinks(a):
    assert a.dtype == np.float64
    assert np.all(np.abs(a) >= 0.1 - 1e-12) and np.all(np.abs(a - 1.0) >= 0.1 - 1e-12)


@given(shapes().flatmap(lambda s: arrays(s, unique=True, low=-1, high=1)))
def test_unique_arrays_have_no_near_ties(a):
    flat = np.sort(a, axis=None)
    assert np.all(flat >= -1) and np.all(flat <= 1)
    if a.size > 1:
        assert np.min(np.diff(flat)) > 2.0 / (4 * a.size)


@given(shapes().flatmap(lambda s: arrays(s, unique=True, low=-1, high=1, away_from=(0.0, 0.5), margin=0.2)))
def test_unique_arrays_also_keep_away_from_kinks(a):
    """unique and away_from together: pushing values out of a band put all of them on its edge."""
    flat = np.sort(a, axis=None)
    assert np.all(flat >= -1) and np.all(flat <= 1)
    assert np.all(np.abs(flat) >= 0.2) and np.all(np.abs(flat - 0.5) >= 0.2)
    if a.size > 1:
        free = 2.0 - 0.4 - 0.4  # [-1, 1] without the bands (-0.2, 0.2) and (0.3, 0.7)
        assert np.min(np.diff(flat)) > free / (4 * a.size)


@given(tensors(requires_grad=False, dtype=np.float32))
def test_tensors_strategy(t):
    assert isinstance(t, mg.Tensor) and t.dtype == np.float32 and not t.requires_grad
    assert np.all(np.abs(t.data) <= 2)


# --- softmax_cross_entropy: cross_entropy as one op -------------------------------------------

@given(st.tuples(st.integers(1, 5), st.integers(1, 6)).flatmap(lambda nc: st.tuples(
    arrays(nc, low=-30, high=30), hnp.arrays(np.int64, nc[:1], elements=st.integers(0, nc[1] - 1)))),
    st.sampled_from([np.float64, np.float32]))
def test_softmax_cross_entropy_is_the_composite_to_the_last_bit(xt, dtype):
    """The trainer switches from one to the other: its losses, and so its weights, must not move."""
    x, targets = xt
    a, b = (mg.tensor(x.astype(dtype), requires_grad=True) for _ in range(2))
    fused, composite = mg.softmax_cross_entropy(a, targets), mg.cross_entropy(b, targets)
    fused.backward()
    composite.backward()
    assert fused.dtype == composite.dtype == dtype
    np.testing.assert_array_equal(fused.data, composite.data)
    np.testing.assert_array_equal(a.grad, b.grad)


@given(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 5)).flatmap(lambda s: st.tuples(
    arrays(s, low=-30, high=30), hnp.arrays(np.int64, s[:2], elements=st.integers(0, s[2] - 1)),
    arrays(s[:1], low=-2, high=2))))
def test_softmax_cross_entropy_keeping_an_axis_is_one_mean_per_entry(xtw):
    """keep=1: entry i is the loss of rows [i] alone, to the last bit, and so is its gradient."""
    x, targets, w = xtw
    a = mg.tensor(x, requires_grad=True)
    per = mg.softmax_cross_entropy(a, targets, keep=1)
    assert per.shape == x.shape[:1]
    (per * mg.tensor(w)).sum().backward()
    for i in range(x.shape[0]):
        b = mg.tensor(x[i], requires_grad=True)
        alone = mg.softmax_cross_entropy(b, targets[i])
        (alone * float(w[i])).backward()
        assert per.data[i] == alone.data
        np.testing.assert_allclose(a.grad[i], b.grad, rtol=1e-15, atol=1e-300)


def test_softmax_cross_entropy_refuses_more_axes_to_keep_than_targets_have():
    with pytest.raises(ValueError, match=r"keep=2: targets of shape \(3,\) have 1 axes to keep"):
        mg.softmax_cross_entropy(mg.tensor(np.zeros((3, 4))), np.zeros(3, dtype=np.int64), keep=2)


@given(linear_read_out_args(), st.sampled_from([np.float64, np.float32]))
def test_linear_cross_entropy_is_the_read_out_and_its_loss_to_rounding(args, dtype):
    """One op for softmax_cross_entropy(x @ weight.T + bias): the same value and gradients, up to where
    the compiled loops round differently (another BLAS, libm's exp and log)."""
    (x, w, b), kw = args
    fused = [mg.tensor(v.astype(dtype), requires_grad=True) for v in (x, w, b)]
    apart = [mg.tensor(v.astype(dtype), requires_grad=True) for v in (x, w, b)]
    one = mg.linear_cross_entropy(*fused, kw["targets"])
    two = mg.softmax_cross_entropy(apart[0] @ apart[1].T + apart[2], kw["targets"])
    one.backward()
    two.backward()
    assert one.dtype == dtype and len(mg.trace(one).nodes) == 5  # x, weight, bias, targets, the loss
    tol = 64 * np.finfo(dtype).eps
    np.testing.assert_allclose(one.data, two.data, rtol=tol, atol=tol)
    for f, a in zip(fused, apart):
        assert f.grad.dtype == dtype
        np.testing.assert_allclose(f.grad, a.grad, rtol=tol, atol=tol)


def test_linear_cross_entropy_without_numba_is_the_composite_to_the_last_bit(monkeypatch):
    from minigrad import fused
    monkeypatch.setattr(fused, "run", lambda *args: False)
    rng = np.random.default_rng(0)
    x, w, b, targets = rng.normal(size=(6, 4)), rng.normal(size=(5, 4)), rng.normal(size=5), rng.integers(0, 5, 6)
    fused_in = [mg.tensor(v, requires_grad=True) for v in (x, w, b)]
    apart = [mg.tensor(v, requires_grad=True) for v in (x, w, b)]
    one = mg.linear_cross_entropy(*fused_in, targets)
    two = mg.softmax_cross_entropy(apart[0] @ apart[1].T + apart[2], targets)
    one.backward()
    two.backward()
    assert one.item() == two.item()
    for f, a in zip(fused_in, apart):
        np.testing.assert_allclose(f.grad, a.grad, rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("shapes, targets, error, message", [
    (((3, 4), (5, 4), (5,)), [0, 1, 2], None, None),
    (((3, 4), (5, 3), (5,)), [0, 1, 2], ValueError,
     r"linear_cross_entropy: cannot apply to shapes \(3, 4\), \(5, 3\), \(5,\), \(3,\): x must be \(N, H\), "
     r"weight \(K, H\) and bias \(K,\); got x \(3, 4\), weight \(5, 3\), bias \(5,\)"),
    (((3, 4), (5, 4), (4,)), [0, 1, 2], ValueError, r"bias \(4,\)"),
    (((3, 4), (5, 4), (5,)), [0, 1], ValueError, r"targets must have the shape .* \(3,\); got \(2,\)"),
    (((3, 4), (5, 4), (5,)), [0, 1, 5], ValueError, r"targets must lie in \[0, 5\)"),
])
def test_linear_cross_entropy_names_what_is_wrong(shapes, targets, error, message):
    args = [mg.tensor(np.ones(s), requires_grad=True) for s in shapes]
    if error is None:
        assert np.isfinite(mg.linear_cross_entropy(*args, np.array(targets)).item())
        return
    with pytest.raises(error, match=message):
        mg.linear_cross_entropy(*args, np.array(targets))


def test_softmax_cross_entropy_is_one_node():
    loss = mg.softmax_cross_entropy(mg.tensor(np.zeros((2, 3)), requires_grad=True), np.array([0, 2]))
    assert loss.op == "softmax_cross_entropy" and len(mg.trace(loss).nodes) == 3  # logits, targets, loss


@pytest.mark.parametrize("logits, targets, error, message", [
    ((2, 3), np.array([0, 1, 2]), mg.ShapeError,
     r"softmax_cross_entropy: cannot apply to shapes \(2, 3\), \(3,\): targets must have the shape of logits "
     r"without its last axis \(the classes\), \(2,\); got \(3,\)"),
    ((2, 3), np.array([0, 3]), mg.ShapeError, r"softmax_cross_entropy: .*targets must lie in \[0, 3\), got values in \[0, 3\]"),
    ((2, 3), np.array([0.0, 1.0]), TypeError,
     r"softmax_cross_entropy: targets must be integer class indices, got float64 of shape \(2,\)"),
    ((), np.array(0), mg.ShapeError, r"softmax_cross_entropy: .*logits need a class axis"),
])
def test_softmax_cross_entropy_names_what_is_wrong(logits, targets, error, message):
    with pytest.raises(error, match=message):
        mg.softmax_cross_entropy(mg.tensor(np.zeros(logits), requires_grad=True), targets)
