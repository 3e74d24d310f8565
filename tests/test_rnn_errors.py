"""Bad inputs to run() fail early with a message naming the cell, the argument and the shapes."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from rnn_helpers import LeakyCell


@pytest.fixture(params=["elman", "lstm", "leaky"])
def cell(request):
    return {"elman": lambda: rnn.ElmanCell(3, 4), "lstm": lambda: rnn.LSTMCell(3, 4),
            "leaky": lambda: LeakyCell(3, 4)}[request.param]()


def name(cell):
    return type(cell).__name__


def test_input_size_mismatch(cell):
    with pytest.raises(ValueError, match=rf"run\({name(cell)}\): xs has input size 5 \(shape \(2, 1, 5\)\).*input_size=3"):
        rnn.run(cell, np.zeros((2, 1, 5)))


def test_input_size_mismatch_batch_first(cell):
    # The size check sees through the layout: a (B, T, I) array with the wrong I is still named by I.
    with pytest.raises(ValueError, match=rf"{name(cell)}.*input size 2"):
        rnn.run(cell, np.zeros((4, 6, 2)), batch_first=True)


@pytest.mark.parametrize("xs", [np.zeros((0, 2, 3)), np.zeros((3, 0, 3))])
def test_no_steps_or_no_batch(cell, xs):
    with pytest.raises(ValueError, match=rf"run\({name(cell)}\): xs of shape \({xs.shape[0]}, {xs.shape[1]}, 3\) "
                                         r"has no steps or no batch"):
        rnn.run(cell, xs)


@pytest.mark.parametrize("xs,err,match", [
    ("abc", TypeError, r"xs must be a sequence array of shape \(T, B, 3\), got str"),
    (None, TypeError, r"xs must be a sequence array.*got None; .*steps= and batch="),
    ({"x": 1}, TypeError, r"xs must be a sequence array.*got dict"),
    (np.zeros((2, 3)), ValueError, r"xs must be 3-d \(T, B, input_size\), got shape \(2, 3\)"),
    (np.zeros(3), ValueError, r"xs must be 3-d.*got shape \(3,\)"),
    (1.5, ValueError, r"xs must be 3-d.*got shape \(\)"),
    ([[[1.0, 2.0, 3.0]], [[1.0, 2.0]]], TypeError, r"xs must be a numeric sequence array.*got a list"),
    (np.array([[["a", "b", "c"]]]), TypeError, r"xs must be a numeric sequence array.*got a ndarray"),
])
def test_not_a_sequence(cell, xs, err, match):
    with pytest.raises(err, match=rf"run\({name(cell)}\): {match}"):
        rnn.run(cell, xs)


def test_state_of_the_wrong_batch(cell):
    n = len(cell.state_names)
    bad = tuple(mg.zeros(5, 4) for _ in range(n))
    with pytest.raises(ValueError, match=rf"{name(cell)}: state0 h has shape \(5, 4\), expected \(2, 4\)"):
        rnn.run(cell, np.zeros((3, 2, 3)), bad if n > 1 else bad[0])


def test_state_of_the_wrong_width(cell):
    n = len(cell.state_names)
    bad = tuple(mg.zeros(2, 7) for _ in range(n))
    with pytest.raises(ValueError, match=rf"{name(cell)}: state0 h has shape \(2, 7\), expected \(2, 4\)"):
        rnn.run(cell, np.zeros((3, 2, 3)), bad if n > 1 else bad[0])


def test_lstm_state_needs_both_h_and_c():
    with pytest.raises(ValueError, match=r"LSTMCell: state0 has 1 tensor\(s\), the cell carries 2 \(shapes \[\(2, 4\), \(2, 4\)\]\)"):
        rnn.run(rnn.LSTMCell(3, 4), np.zeros((3, 2, 3)), mg.zeros(2, 4))
    with pytest.raises(ValueError, match=r"LSTMCell: state0 c has shape \(2, 5\), expected \(2, 4\)"):
        rnn.run(rnn.LSTMCell(3, 4), np.zeros((3, 2, 3)), (mg.zeros(2, 4), mg.zeros(2, 5)))


def test_state_given_as_arrays_is_taken_like_xs():
    """Like xs, state0 may be NumPy arrays or nested lists (constants of the cell's dtype); for a
    one-state cell a list is the state's values, not a tuple of states."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((3, 2, 3))
    for cell, s0 in ((rnn.ElmanCell(3, 4), rng.standard_normal((2, 4))),
                     (rnn.LSTMCell(3, 4), (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))))):
        want = rnn.run(cell, xs, tuple(map(mg.tensor, s0)) if isinstance(s0, tuple) else mg.tensor(s0))
        for given in (s0, [a.tolist() for a in s0] if isinstance(s0, tuple) else s0.tolist()):
            got = rnn.run(cell, xs, given)
            np.testing.assert_array_equal(got.outputs.data, want.outputs.data)
    with pytest.raises(ValueError, match=r"ElmanCell: state0 h has shape \(2, 5\), expected \(2, 4\)"):
        rnn.run(rnn.ElmanCell(3, 4), xs, np.zeros((2, 5)))


def test_state_that_does_not_convert():
    with pytest.raises(TypeError, match=r"run\(ElmanCell\): state0 must hold numeric arrays.*got a list"):
        rnn.run(rnn.ElmanCell(3, 4), np.zeros((3, 2, 3)), [[1.0, "a", 2.0, 3.0]] * 2)
    with pytest.raises(TypeError, match=r"ElmanCell: state0\[0\] is a str, expected a Tensor of shape \(2, 4\)"):
        rnn.run(rnn.ElmanCell(3, 4), np.zeros((3, 2, 3)), "zeros")


def test_dtype_mismatch_is_named():
    with pytest.raises(TypeError, match=r"run\(ElmanCell\): xs has dtype float32.*float64"):
        rnn.run(rnn.ElmanCell(3, 4), mg.tensor(np.zeros((2, 1, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match=r"run\(ElmanCell\): state0 has dtype float32"):
        rnn.run(rnn.ElmanCell(3, 4), np.zeros((2, 1, 3)), mg.tensor(np.zeros((1, 4), dtype=np.float32)))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        rnn.run(rnn.ElmanCell(3, 4), np.zeros((2, 1, 3)), backend="cuda")


def test_tbptt_checks_its_inputs_before_any_window():
    # The generator must fail on the first next(), naming the cell, not after running windows.
    gen = rnn.tbptt(rnn.GRUCell(3, 4), np.zeros((5, 2, 6)), lambda o, s: o.sum(), 2)
    with pytest.raises(ValueError, match=r"run\(GRUCell\): xs has input size 6"):
        next(gen)


def test_a_cell_without_step_cannot_be_made():
    class Stepless(rnn.Cell):
        pass
    with pytest.raises(TypeError, match="step"):
        Stepless(2, 3)
