"""A kernel run's graph is freed when the last reference to it goes, without the garbage collector.

A reference cycle per run (the step states and the object that fills in their gradients holding each
other) kept every training step's graph and pooled kernel buffers alive until a collection: the
buffers could not be reused, and the collector's work grew with each step.
"""
import gc
import weakref

import numpy as np
import pytest

import rnn


def _run(cell, xs):
    result = rnn.run(cell, xs, backend="numba")
    loss = (result.outputs * result.outputs).sum()
    return result, loss


@pytest.fixture
def no_collector():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("kind", ["elman", "lstm"])
def test_a_run_whose_states_were_read_is_freed_by_reference_counting(kind, no_collector):
    rng = np.random.default_rng(0)
    cell = rnn.ElmanCell(3, 4, rng=rng) if kind == "elman" else rnn.LSTMCell(3, 4, rng=rng)
    xs = rng.standard_normal((5, 2, 3))
    result, loss = _run(cell, xs)
    loss.backward()
    final = result.state  # what a training step carries to the next window
    step2 = result.states[2]
    outputs = weakref.ref(result.outputs)
    assert outputs() is not None
    del result, loss, final, step2
    assert outputs() is None


def test_a_step_state_gets_its_gradient_when_only_it_was_kept_and_when_made_after_the_backward():
    rng = np.random.default_rng(1)
    cell = rnn.ElmanCell(3, 4, rng=rng)
    xs = rng.standard_normal((5, 2, 3))
    ref = rnn.run(cell, xs, backend="graph")
    ((ref.outputs * ref.outputs).sum()).backward()
    result, loss = _run(cell, xs)
    kept = result.states[2][0]
    del result  # the run's StepStates goes with it: the state alone is kept
    loss.backward()
    np.testing.assert_allclose(kept.grad, ref.states[2][0].grad, rtol=1e-10, atol=1e-12)

    result, loss = _run(cell, xs)
    loss.backward()
    late = result.states[3][0]  # made after the backward: its gradient is filled in from what it computed
    np.testing.assert_allclose(late.grad, ref.states[3][0].grad, rtol=1e-10, atol=1e-12)
    assert result.states[3][0] is late and result.states[-1] is result.states[4]
