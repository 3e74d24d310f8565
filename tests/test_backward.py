"""Graph-level behaviour of backward(): reuse, diamonds, depth, no_grad, detach, accumulation."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigrad as mg
from minigrad.testing import arrays, shapes, tensors


def numerical_grad(f, x, eps=1e-6):
    """Central differences of scalar f at array x (for comparisons that gradcheck cannot express)."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        orig = x[idx]
        x[idx] = orig + eps
        plus = f(x)
        x[idx] = orig - eps
        minus = f(x)
        x[idx] = orig
        g[idx] = (plus - minus) / (2 * eps)
    return g


@pytest.mark.parametrize("name, fn", [
    ("a*a", lambda a: a * a),
    ("a+a", lambda a: a + a),
    ("a*a*a", lambda a: a * a * a),
    ("a-a*a", lambda a: a - a * a),
    ("a/(1+sum a*a)", lambda a: a / ((a * a).sum() + 1.0)),
])
@given(a=tensors())
def test_reused_node(name, fn, a):
    y = fn(a)
    np.testing.assert_allclose(y.data, fn(a.data.copy()))
    assert mg.gradcheck(fn, [a])


@given(a=shapes(max_dims=2).flatmap(tensors))
def test_diamond(a):
    def diamond(a):
        top = a.tanh()              # one node, two paths down to the bottom
        left, right = top * 3.0, top.exp()
        return (left * right).sum()
    assert mg.gradcheck(diamond, [a])
    a.grad = None
    diamond(a).backward()
    expected = numerical_grad(lambda x: np.sum(3 * np.tanh(x) * np.exp(np.tanh(x))), a.data)
    np.testing.assert_allclose(a.grad, expected, rtol=1e-6, atol=1e-8)


def test_a_times_a_gradient_is_twice_a():
    a = mg.tensor([1.5, -2.0, 0.25], requires_grad=True)
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad, 2 * a.data)
    b = mg.tensor([1.5, -2.0], requires_grad=True)
    (b + b).sum().backward()
    np.testing.assert_allclose(b.grad, np.full(2, 2.0))


def test_deep_chain_has_no_recursion_error():
    n = 100_000
    x = mg.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.00001
    y.backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad, 1.00001 ** n, rtol=1e-9)
    np.testing.assert_allclose(y.data, 0.5 * 1.00001 ** n, rtol=1e-9)
    del y  # freeing a 100,000-deep chain must not blow the C stack either


def test_no_grad_records_nothing():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (a * a).exp().sum()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.op is None and y._parents == ()
    with pytest.raises(RuntimeError):
        y.backward()
    assert a.grad is None


def test_no_grad_as_decorator_and_nested():
    a = mg.tensor([1.0, 2.0], requires_grad=True)

    @mg.no_grad()
    def f(x):
        with mg.no_grad():
            pass
        return x * 2.0  # still inside the outer no_grad

    y = f(a)
    assert not y.requires_grad and y.op is None
    assert mg.is_grad_enabled()
    assert (a * 2.0).requires_grad


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with mg.no_grad():
            1 / 0
    assert mg.is_grad_enabled()


def test_detach_stops_the_gradient():
    a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = (a * a).detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.data, a.data ** 2)
    y = (d * a).sum()        # d counts as a constant
    y.backward()
    np.testing.assert_allclose(a.grad, a.data ** 2)
    assert d.grad is None


def test_gradients_accumulate_over_backward_calls():
    a = mg.tensor([1.0, -2.0], requires_grad=True)
    (a * 3.0).sum().backward()
    first = a.grad.copy()
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad, first + 2 * a.data)
    a.zero_grad()
    assert a.grad is None


def test_backward_twice_on_same_graph():
    a = mg.tensor([0.5, 1.5], requires_grad=True)
    y = (a.tanh() * a).sum()
    y.backward()
    once = a.grad.copy()
    y.backward()
    np.testing.assert_allclose(a.grad, 2 * once)


def test_backward_on_non_scalar_needs_grad():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    y = a * 2.0
    with pytest.raises(RuntimeError, match=r"not a scalar.*grad="):
        y.backward()
    g = np.array([1.0, -3.0])
    y.backward(g)
    np.testing.assert_allclose(a.grad, 2.0 * g)
    with pytest.raises(mg.ShapeError, match=r"\(3,\).*\(2,\)"):
        y.backward(np.ones(3))


def test_backward_without_grad_graph_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor(3.0).backward()


def test_retain_grad_on_intermediate():
    a = mg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    h = (a * a).retain_grad()
    other = a.exp()
    y = (h.tanh() + other).sum()
    y.backward()
    np.testing.assert_allclose(h.grad, 1 - np.tanh(h.data) ** 2)
    assert other.grad is None           # not retained
    np.testing.assert_allclose(a.grad, h.grad * 2 * a.data + np.exp(a.data))


def test_leaf_that_does_not_require_grad_gets_none():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    c = mg.tensor([3.0, 4.0])
    (a * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(a.grad, c.data)


@given(st.data())
def test_broadcast_gradients_have_the_input_shape(data):
    from minigrad.testing import broadcastable_shapes
    sa, sb = data.draw(broadcastable_shapes())
    a = mg.tensor(data.draw(arrays(sa)), requires_grad=True)
    b = mg.tensor(data.draw(arrays(sb)), requires_grad=True)
    (a * b + a).sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    full = np.broadcast_shapes(sa, sb)
    # Independently of unbroadcast: each element of the broadcast product adds its factor to the
    # one element of the operand it came from.
    A, B = np.broadcast_to(a.data, full), np.broadcast_to(b.data, full)
    want_a, want_b = np.zeros(sa), np.zeros(sb)
    for idx in np.ndindex(full):
        ia = tuple(0 if s == 1 else i for i, s in zip(idx[len(full) - len(sa):], sa))
        ib = tuple(0 if s == 1 else i for i, s in zip(idx[len(full) - len(sb):], sb))
        want_b[ib] += A[idx]
        want_a[ia] += B[idx] + 1
    np.testing.assert_allclose(b.grad, want_b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.grad, want_a, rtol=1e-12, atol=1e-12)


def test_cast_to_integer_stops_the_gradient():
    x = mg.tensor([1.5, 2.5], requires_grad=True)
    i = x.astype("int64")
    assert i.dtype == np.int64 and not i.requires_grad
    y = (x * 3.0 + i).sum()             # i counts as a constant
    y.backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])
    # A float-to-float cast keeps the gradient, in the input's dtype.
    x32 = mg.tensor(np.array([1.5, 2.5], dtype=np.float32), requires_grad=True)
    (x32.astype("float64") ** 2).sum().backward()
    assert x32.grad.dtype == np.float32
    np.testing.assert_allclose(x32.grad, 2 * x32.data)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_max_splits_the_gradient_evenly_between_ties(axis):
    x = mg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]], requires_grad=True)
    x.max(axis=axis).sum().backward()
    mask = x.data == x.data.max(axis=axis, keepdims=True)
    np.testing.assert_allclose(x.grad, mask / mask.sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(x.grad.sum(), np.size(x.data.max(axis=axis)))  # each max passes on exactly 1


def test_a_vjp_of_the_wrong_shape_is_caught_at_its_op():
    @mg.primitive("test_backward__bad_shape")
    def bad(a):
        return a * 2

    @bad.vjp
    def _(g, out, a):
        return (np.ones(a.shape + (2,)),)  # one axis too many: must not broadcast away

    x = mg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"test_backward__bad_shape gave a gradient of shape \(3, 2\)"):
        bad(x).sum().backward()


def test_truth_value_only_for_one_element():
    assert bool(mg.tensor([2.0])) and not bool(mg.tensor(0.0))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(mg.tensor([1.0, 2.0]))
