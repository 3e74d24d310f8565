"""Output-to-hidden recurrence: teacher-forced training, free-running generation."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad.errors import ShapeError

I, H, O = 2, 5, 3


def make(seed=0):
    return rnn.OutputRecurrentCell(I, H, O, rng=np.random.default_rng(seed))


def by_hand(m, x, y_prev):
    # Goodfellow et al. Fig. 10.4 in NumPy: h = tanh(b + W y(t-1) + U x), o = c + V h.
    h = np.tanh(m.bias_h.data + y_prev @ m.weight_oh.data.T + x @ m.weight_ih.data.T)
    return m.bias_o.data + h @ m.weight_ho.data.T


def test_teacher_forcing_feeds_the_true_previous_target():
    rng = np.random.default_rng(1)
    m = make()
    T, B = 4, 2
    xs, ys, y0 = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, O)), rng.normal(size=(B, O))
    out = m.teacher_forced(xs, ys, mg.tensor(y0)).data
    prev = np.concatenate([y0[None], ys[:-1]])
    for t in range(T):
        np.testing.assert_allclose(out[t], by_hand(m, xs[t], prev[t]), rtol=1e-13)
    # Zeros before the first step when no y0 is given.
    np.testing.assert_allclose(m.teacher_forced(xs, ys).data[0], by_hand(m, xs[0], np.zeros((B, O))), rtol=1e-13)


def test_generate_feeds_back_its_own_outputs():
    rng = np.random.default_rng(2)
    m = make()
    T, B = 5, 2
    xs, ys, y0 = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, O)), rng.normal(size=(B, O))
    gen = m.generate(xs, mg.tensor(y0))
    out, fed = gen.outputs.data, gen.fed.data
    # `fed` is read from the unfolded graph that ran: what step t's y(t-1) argument actually received.
    np.testing.assert_array_equal(fed[0], y0)
    np.testing.assert_array_equal(fed[1:], out[:-1])
    for t in range(T):
        np.testing.assert_allclose(out[t], by_hand(m, xs[t], fed[t]), rtol=1e-13)
    # Both modes see y0 at the first step, then part ways: one is fed ys, the other its own outputs.
    tf = m.teacher_forced(xs, ys, mg.tensor(y0)).data
    np.testing.assert_allclose(out[0], tf[0], rtol=1e-13)
    assert not np.allclose(out[1:], tf[1:])


def test_free_running_graph_has_the_output_to_hidden_delay():
    m = make()
    g = m.rolled(batch=1)
    (loop,) = g.loops
    assert loop.name == "o" and loop.delay == 1 and g.find_cycle() is None
    # The carried state is the output, not the hidden layer: it has O columns.
    assert g.nodes[loop.input].shape == (1, O)


def test_teacher_forced_gradients():
    rng = np.random.default_rng(3)
    m = make(3)
    xs = mg.Tensor(rng.normal(size=(3, 2, I)), requires_grad=True)
    ys = mg.Tensor(rng.normal(size=(3, 2, O)), requires_grad=True)
    y0 = mg.Tensor(rng.normal(size=(2, O)), requires_grad=True)
    # ys takes part twice, as fed-back input and as target: both paths must be differentiated.
    assert mg.gradcheck(lambda xs, ys, y0, *p: m.train_loss(xs, ys, y0), [xs, ys, y0, *m.parameters()],
                        atol=1e-7, rtol=1e-5)


def test_free_running_gradients():
    rng = np.random.default_rng(4)
    m = make(4)
    xs = mg.Tensor(rng.normal(size=(3, 1, I)), requires_grad=True)
    assert mg.gradcheck(lambda xs, *p: m.generate(xs).outputs, [xs, *m.parameters()])


def target_sequences(rng, T, B):
    # A target that depends on the previous target, the dependence teacher forcing hands to the model.
    xs = rng.uniform(-1, 1, size=(T, B, I))
    ys, y = np.zeros((T, B, O)), np.zeros((B, O))
    mix = np.array([[0.6, -0.3, 0.2], [0.1, 0.5, -0.4], [-0.2, 0.3, 0.7]])
    for t in range(T):
        y = np.tanh(y @ mix + np.concatenate([xs[t], xs[t, :, :1]], axis=1))
        ys[t] = y
    return xs, ys


def test_teacher_forced_training_reduces_the_loss():
    rng = np.random.default_rng(5)
    m = make(5)
    xs, ys = target_sequences(rng, 10, 8)
    start = m.train_loss(xs, ys).item()
    start_free = mg.mse_loss(m.generate(xs).outputs, mg.tensor(ys)).item()
    for _ in range(300):
        m.zero_grad()
        m.train_loss(xs, ys).backward()
        for p in m.parameters():
            p.data -= 0.5 * p.grad
    end = m.train_loss(xs, ys).item()
    assert end < 0.1 * start
    # What was learnt with true targets fed in also holds when the model feeds itself.
    assert mg.mse_loss(m.generate(xs).outputs, mg.tensor(ys)).item() < 0.5 * start_free


@pytest.mark.parametrize("ys,match", [(np.zeros((4, 2, O + 1)), r"ys has shape \(4, 2, 4\).*\(4, 2, 3\)"),
                                      (np.zeros((3, 2, O)), r"ys has shape \(3, 2, 3\).*\(4, 2, 3\)")])
def test_targets_must_fit_the_inputs(ys, match):
    with pytest.raises(ShapeError, match=match):
        make().train_loss(np.zeros((4, 2, I)), ys)


def test_y0_of_the_wrong_width_is_rejected():
    with pytest.raises(ValueError, match=r"OutputRecurrentCell.*state0.*\(2, 5\).*\(2, 3\)"):
        make().generate(np.zeros((4, 2, I)), mg.zeros(2, 5))
