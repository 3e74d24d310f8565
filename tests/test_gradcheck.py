"""gradcheck itself: it must pass right gradients and catch wrong ones, saying where."""
import warnings

import numpy as np
import pytest
from hypothesis import given

import minigrad as mg
from minigrad.op import PRIMITIVES, primitive
from minigrad.testing import shapes, tensors


# Ops with deliberately wrong vjps, registered under names no real op uses.
@primitive("test_gradcheck__square_missing_factor")
def _square_missing_factor(a):
    return a * a


@_square_missing_factor.vjp
def _(g, out, a):
    return (g * a,)                             # should be 2 * g * a


@primitive("test_gradcheck__mul_wrong_at_one_element")
def _mul_wrong_at_one_element(a, b):
    return a * b


@_mul_wrong_at_one_element.vjp
def _(g, out, a, b):
    gb = g * a
    gb = gb.copy()
    gb[1, 2] += 0.5                             # only b's element (1, 2) is wrong
    return g * b, gb


@primitive("test_gradcheck__square_correct")
def _square_correct(a):
    return a * a


@_square_correct.vjp
def _(g, out, a):
    return (2 * g * a,)


@primitive("test_gradcheck__exp_off_by_one_percent")
def _exp_off_by_one_percent(a):
    return np.exp(a)


@_exp_off_by_one_percent.vjp
def _(g, out, a):
    return (g * out * 1.01,)


@primitive("test_gradcheck__exp_off_by_1e_7")
def _exp_off_by_1e_7(a):
    return np.exp(a)


@_exp_off_by_1e_7.vjp
def _(g, out, a):
    return (g * out * (1 + 1e-7),)


def test_broken_ops_are_registered_under_their_own_names():
    assert PRIMITIVES["test_gradcheck__square_missing_factor"] is _square_missing_factor
    assert "square" not in PRIMITIVES


@given(shapes().flatmap(lambda s: tensors(s, away_from=(0.0,), margin=0.1)))
def test_correct_vjp_passes(x):
    result = mg.gradcheck(_square_correct, [x])
    assert result and result.ok and result.checked == x.size and not result.failures
    assert result.worst_rel_error < 1e-6


@given(shapes().flatmap(lambda s: tensors(s, away_from=(0.0,), margin=0.1)))
def test_wrong_vjp_is_caught(x):
    with pytest.raises(mg.GradcheckError, match=r"input 0 .*element \(") as info:
        mg.gradcheck(_square_missing_factor, [x])
    assert isinstance(info.value, AssertionError)  # so a bare `assert gradcheck(...)` reads naturally too


def test_message_names_input_and_element():
    a = mg.tensor(np.full((2, 3), 1.5), requires_grad=True, name="a")
    b = mg.tensor(np.arange(6.0).reshape(2, 3) - 2.5, requires_grad=True, name="weights")
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradcheck(_mul_wrong_at_one_element, [a, b])
    msg = str(info.value)
    assert "input 1 ('weights') of shape (2, 3)" in msg
    assert "element (1, 2)" in msg
    assert "analytic" in msg and "numerical" in msg
    assert "1 of 12 elements disagree" in msg


def test_raise_exception_false_returns_falsy_result():
    x = mg.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    result = mg.gradcheck(_square_missing_factor, [x], raise_exception=False)
    assert not result and not result.ok
    assert result.checked == 4
    assert {idx for _, idx, _, _ in result.failures} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for i, idx, analytic, numerical in result.failures:
        assert i == 0
        # The output is projected with random weights w: analytic is w*x, the truth 2*w*x.
        np.testing.assert_allclose(numerical, 2 * analytic, rtol=1e-6)
        assert abs(analytic) > 0


def test_float32_inputs_warn_and_are_checked_in_float64():
    x = mg.tensor(np.array([0.5, -1.25], dtype=np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="float32"):
        assert mg.gradcheck(lambda x: x.tanh(), [x])
    with pytest.warns(UserWarning, match="float32"):
        assert not mg.gradcheck(_square_missing_factor, [x], raise_exception=False)
    assert x.dtype == np.float32 and x.grad is None  # the caller's tensor is untouched


def test_float64_inputs_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mg.gradcheck(lambda x: x.exp(), [mg.tensor([0.1, 0.2], requires_grad=True)])


def test_only_inputs_that_require_grad_are_checked():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = mg.tensor([3.0, 4.0])
    result = mg.gradcheck(lambda x, c: x * c, [x, c])
    assert result.checked == 2
    np.testing.assert_array_equal(c.data, [3.0, 4.0])


def test_plain_arrays_become_inputs_and_tuple_outputs_are_checked():
    result = mg.gradcheck(lambda x: (x.exp(), x * 2.0), [np.array([0.3, -0.7])])
    assert result.checked == 2
    # A wrong gradient in the second output alone is still caught.
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(lambda x: (x.exp(), _square_missing_factor(x)), [np.array([0.3, -0.7])])


def test_nothing_to_check_is_an_error():
    with pytest.raises(ValueError, match="no input requires grad"):
        mg.gradcheck(lambda x: x * 2.0, [mg.tensor([1.0])])
    with pytest.raises(ValueError, match="does not depend"):
        mg.gradcheck(lambda x: mg.tensor([1.0]), [mg.tensor([1.0], requires_grad=True)])


def test_tolerance_separates_small_errors_from_real_ones():
    x = mg.tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3), requires_grad=True)
    assert not mg.gradcheck(_exp_off_by_one_percent, [x], raise_exception=False)   # 1% > rtol=1e-6
    assert mg.gradcheck(_exp_off_by_1e_7, [x])                                     # round-off sized
    assert mg.gradcheck(_exp_off_by_one_percent, [x], rtol=0.05)                   # the tolerance is honoured
