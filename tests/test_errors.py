"""Wrong use gets a clear error that names the op, the shapes or the dtype."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg


def t(*shape, dtype=np.float64, requires_grad=True):
    return mg.tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad and np.dtype(dtype).kind == "f")


@pytest.mark.parametrize("op, fn, a_shape, b_shape", [
    ("add", lambda a, b: a + b, (2, 3), (4,)),
    ("add", lambda a, b: a - b, (2, 3), (3, 2)),
    ("mul", lambda a, b: a * b, (3,), (2,)),
    ("mul", lambda a, b: a / b, (2, 2), (3, 1)),
    ("matmul", lambda a, b: a @ b, (2, 3), (2, 3)),
    ("matmul", lambda a, b: a @ b, (3,), (4,)),
    ("matmul", lambda a, b: a @ b, (2, 2, 3), (3, 3, 2)),
    ("concatenate", lambda a, b: mg.concatenate([a, b], axis=0), (2, 3), (2, 4)),
    ("reshape", lambda a, b: a.reshape(5), (2, 3), (1,)),
    ("mse_loss", lambda a, b: mg.mse_loss(a, b), (2, 3), (3, 2)),
    ("stack", lambda a, b: mg.stack([a, b]), (2,), (3,)),
])
def test_shape_mismatch_names_op_and_both_shapes(op, fn, a_shape, b_shape):
    a, b = t(*a_shape), t(*b_shape)
    with pytest.raises(mg.ShapeError) as info:
        fn(a, b)
    msg = str(info.value)
    assert msg.startswith(op + ":")
    assert str(a_shape) in msg
    if op != "reshape":
        assert str(b_shape) in msg
    assert isinstance(info.value, ValueError)  # ShapeError is a ValueError, as NumPy users expect


def test_cross_entropy_shape_and_target_errors():
    logits = t(3, 4)
    with pytest.raises(mg.ShapeError, match=r"cross_entropy.*\(3, 4\).*\(2,\)"):
        mg.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="cross_entropy.*integer"):
        mg.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"cross_entropy.*\[0, 4\)"):
        mg.cross_entropy(logits, np.array([0, 4, 1]))


def test_split_into_unequal_parts_is_refused():
    with pytest.raises(mg.ShapeError, match=r"split.*\(2, 5\).*3"):
        mg.split(t(2, 5), 3)


@pytest.mark.parametrize("bad", ["abc", object(), {"a": 1}, [1, "x"], None, 1 + 2j, [[1.0, 2.0], [3.0]]])
def test_non_numeric_data_is_refused(bad):
    with pytest.raises(TypeError, match="Tensor"):
        mg.tensor(bad)


@pytest.mark.parametrize("bad", ["abc", object(), None])
def test_non_numeric_operand_is_refused(bad):
    x = t(2)
    with pytest.raises(TypeError, match="cannot"):
        x + bad
    with pytest.raises(TypeError, match="cannot"):
        x * bad
    with pytest.raises(TypeError, match="cannot"):
        bad - x


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid"])
def test_float_op_on_integer_tensor_says_so(name):
    x = mg.tensor(np.array([1, 2, 3]))
    assert x.dtype.kind == "i"
    with pytest.raises(TypeError) as info:
        getattr(mg, name)(x)
    msg = str(info.value)
    assert msg.startswith(name + ":") and "int64" in msg and "floating point" in msg
    # ...and the hint in the message works.
    assert getattr(mg, name)(x.astype("float64")).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_requires_grad_on_non_float_tensor_is_refused(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        mg.tensor(np.array([1, 0], dtype=dtype), requires_grad=True)
    assert mg.tensor(np.array([1, 0], dtype=dtype)).dtype == dtype  # without grad they are fine


def test_integer_tensors_still_do_integer_arithmetic():
    x = mg.tensor([1, 2, 3])
    y = x * 2 + 1
    assert y.dtype.kind == "i"
    np.testing.assert_array_equal(y.data, [3, 5, 7])


def test_options_given_positionally_to_concatenate_are_not_dropped():
    a, b = t(2, 2), t(2, 3)
    with pytest.raises(TypeError, match="concatenate.*axis=1"):
        mg.concatenate([a, b], 1)
    assert mg.concatenate([a, b], axis=1).shape == (2, 5)


@pytest.mark.parametrize("fn", [mg.stack, mg.concatenate])
def test_joining_nothing_is_refused(fn):
    with pytest.raises(ValueError, match="at least one tensor"):
        fn([])


def test_item_on_non_scalar_is_refused():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        t(2).item()


@pytest.mark.parametrize("make", [mg.zeros, mg.ones, mg.randn], ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [(2, -1), (2.0, 3), (True, 3), (np.bool_(True),), ("2",), (2, None)])
def test_a_bad_shape_for_a_new_tensor_names_the_function(make, bad):
    with pytest.raises((TypeError, ValueError), match=rf"^{make.__name__}: shape must"):
        make(*bad)
    with pytest.raises((TypeError, ValueError), match=rf"^{make.__name__}: shape must"):
        make(bad)


@given(shape=st.lists(st.one_of(st.integers(0, 4), st.integers(0, 4).map(np.int64)), max_size=4))
def test_a_new_tensor_has_the_shape_given_as_ints_or_one_sequence(shape):
    for got in (mg.zeros(*shape), mg.ones(*shape), mg.zeros(shape), mg.randn(tuple(shape))):
        assert got.shape == tuple(int(n) for n in shape)
        assert all(type(n) is int for n in got.shape)
