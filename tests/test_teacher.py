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
    assert g.find_cycle() is None and g.feedback.feed == "output"
    # The recurrence runs through the output, not the hidden layer: h(t-1) is read by nothing, and what
    # is fed back has O columns.
    assert g.read_loops() == [] and g.nodes[g.feedback.input].shape == (1, O)
    u = rnn.unfold(g, 3)
    assert u.fed[1:] == u.outputs[:-1] and u.nodes[u.fed[0]].role == "feedback"


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


@pytest.mark.parametrize("ys,match", [(np.zeros((4, 2, O + 1)), r"targets have shape \(4, 2, 4\).*y\(t−1\).*"
                                                                r"output_size=3.*\(4, 2, 3\)"),
                                      (np.zeros((3, 2, O)), r"targets have shape \(3, 2, 3\).*\(4, 2\)")])
def test_targets_must_fit_the_inputs(ys, match):
    with pytest.raises(ShapeError, match=match):
        make().train_loss(np.zeros((4, 2, I)), ys)


def test_y0_of_the_wrong_width_is_rejected():
    with pytest.raises(ShapeError, match=r"OutputRecurrentCell.*y0 has shape \(2, 5\).*\(2, 3\)"):
        make().generate(np.zeros((4, 2, I)), mg.zeros(2, 5))


# --- classes: one-hot targets fed back, argmax or sampled choices when free-running ---------------

def class_sequences(rng, T, B, K=3):
    """A Markov chain over K classes, nudged by x: the next class is mostly (previous + 1) mod K."""
    xs = rng.normal(size=(T, B, I)) * 0.1
    ys = np.zeros((T, B), dtype=np.int64)
    y = rng.integers(0, K, B)
    for t in range(T):
        y = np.where(rng.random(B) < 0.9, (y + 1) % K, rng.integers(0, K, B))
        ys[t] = y
    return xs, ys


def test_teacher_forced_classification_trains_and_free_running_follows_it():
    rng = np.random.default_rng(8)
    m = rnn.OutputRecurrentCell(I, 8, 3, classes=True, rng=np.random.default_rng(8))
    xs, ys = class_sequences(rng, 12, 16)
    y0 = mg.onehot(np.full(16, 2), 3)  # class 2 "before" the sequence, so class 0 tends to come first
    opt = mg.optim.Adam(m.parameters(), lr=0.05)
    start = m.train_loss(xs, ys, y0).item()
    for _ in range(150):
        m.zero_grad()
        m.train_loss(xs, ys, y0).backward()
        opt.step()
    assert m.train_loss(xs, ys, y0).item() < 0.5 * start
    gen = m.generate(xs, y0)
    chosen = gen.outputs.data.argmax(-1)
    # what each step was fed is the one-hot of the previous step's argmax: the chain it learnt, followed
    np.testing.assert_array_equal(gen.fed.data[1:].argmax(-1), chosen[:-1])
    assert (gen.fed.data.sum(-1) == 1).all()
    assert np.mean(chosen[1:] == (chosen[:-1] + 1) % 3) > 0.9


def test_sampled_generation_draws_from_the_softmax_and_is_seeded():
    m = rnn.OutputRecurrentCell(I, 4, 3, classes=True, rng=np.random.default_rng(1))
    xs = np.zeros((6, 200, I))
    a, b, c = (m.generate(xs, sample=True, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.fed.data, b.fed.data)
    assert not np.array_equal(a.fed.data, c.fed.data)
    # the choice fed at step 1 follows softmax(o(0)): o(0) is the same for every sequence here
    p = np.exp(a.outputs.data[0, 0]) / np.exp(a.outputs.data[0, 0]).sum()
    freq = a.fed.data[1].mean(0)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(0.25 / 200))
