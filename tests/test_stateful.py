"""Stateful: one step per call, the state kept between calls."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from rnn.rolled import as_tuple
from rnn_helpers import CELL_KINDS, make_cell, random_state


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_steps_equal_one_run_over_the_sequence(kind):
    rng = np.random.default_rng(0)
    cell = make_cell(kind, 3, 4)
    xs = rng.normal(size=(5, 2, 3))
    state0 = random_state(cell, 2, rng)
    s = rnn.Stateful(cell, state0)
    ys = [s.step(x) for x in xs]
    res = rnn.run(cell, xs, state0)
    np.testing.assert_allclose(np.stack([y.data for y in ys]), res.outputs.data, rtol=1e-13)
    for a, b in zip(as_tuple(s.state), as_tuple(res.state)):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-13)


def test_gradients_flow_across_calls_like_bptt():
    rng = np.random.default_rng(1)
    cell = make_cell("lstm", 3, 4)
    xs = rng.normal(size=(4, 2, 3))
    w = rng.normal(size=(4, 2, 4))
    loss = rnn.run(cell, xs).outputs * w
    loss.sum().backward()
    want = {n: p.grad.copy() for n, p in cell.named_parameters()}
    cell.zero_grad()
    s = rnn.Stateful(cell)
    total = sum((s.step(x) * wt).sum() for x, wt in zip(xs, w))
    total.backward()
    for n, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, want[n], rtol=1e-12, atol=1e-14, err_msg=n)


def test_detach_cuts_the_history_but_keeps_the_values():
    rng = np.random.default_rng(2)
    cell = make_cell("elman", 2, 3)
    xs = rng.normal(size=(3, 1, 2))
    s = rnn.Stateful(cell)
    s.step(xs[0]); s.step(xs[1])
    before = s.state.data.copy()
    s.detach()
    np.testing.assert_array_equal(s.state.data, before)
    s.step(xs[2]).sum().backward()
    got = cell.weight_hh.grad.copy()
    cell.zero_grad()
    # Only the last step contributes once the history is cut.
    cell.step(mg.tensor(xs[2]), mg.tensor(before)).sum().backward()
    np.testing.assert_allclose(got, cell.weight_hh.grad, rtol=1e-13)


def test_single_example_in_and_out():
    rng = np.random.default_rng(3)
    cell = make_cell("gru", 3, 4)
    xs = rng.normal(size=(3, 3))
    s = rnn.Stateful(cell)
    ys = [s.step(x) for x in xs]
    assert all(y.shape == (4,) for y in ys)
    res = rnn.run(cell, xs[:, None, :])
    np.testing.assert_allclose(np.stack([y.data for y in ys]), res.outputs.data[:, 0], rtol=1e-13)


def test_reset_starts_again_from_the_initial_state():
    rng = np.random.default_rng(4)
    cell = make_cell("elman", 2, 3)
    xs = rng.normal(size=(3, 2, 2))
    s = rnn.Stateful(cell)
    first = s.step(xs[0]).data.copy()
    second = s.step(xs[0]).data
    assert not np.allclose(first, second)  # the state moved on, so the same input gives a new output
    s.reset()
    assert s.state is None
    np.testing.assert_array_equal(s.step(xs[0]).data, first)
    # After a reset the batch may change: the next state is built for the new batch.
    s.reset()
    assert s.step(xs[0, :1]).shape == (1, 3)


def test_state_is_settable():
    rng = np.random.default_rng(5)
    cell = make_cell("lstm", 2, 3)
    x = rng.normal(size=(2, 2))
    h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    s = rnn.Stateful(cell)
    s.state = (h, c)  # plain arrays are accepted
    y = s.step(x)
    want_h, want_c = cell.step(mg.tensor(x), (mg.tensor(h), mg.tensor(c)))
    np.testing.assert_allclose(y.data, want_h.data, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(s.state[1].data, want_c.data, rtol=1e-13, atol=1e-15)
    # A 1-d state is one example's state.
    s.state = (h[0], c[0])
    assert s.step(x[0]).shape == (3,) and s.state[0].shape == (1, 3)


def test_a_batch_that_does_not_fit_the_state_is_an_error():
    cell = make_cell("elman", 2, 3)
    s = rnn.Stateful(cell)
    s.step(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"ElmanCell: Stateful.state.*\(2, 2\).*shape \(4, 3\), expected \(2, 3\)"):
        s.step(np.zeros((2, 2)))


@pytest.mark.parametrize("x,err,match", [(np.zeros((1, 2, 2)), ValueError, r"got shape \(1, 2, 2\)"),
                                         (None, TypeError, "got NoneType"),
                                         ("ab", TypeError, "got str"),
                                         (np.zeros((2, 5)), ValueError, "input size 5")])
def test_bad_inputs_are_named(x, err, match):
    with pytest.raises(err, match=match):
        rnn.Stateful(make_cell("elman", 2, 3)).step(x)
