"""Truncated BPTT: one window is full BPTT; shorter windows give the gradient of the windowed losses."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from rnn.rolled import as_tuple
from rnn_helpers import make_cell, random_state

T, B, I, H = 7, 2, 3, 4


def setup(kind="lstm", seed=0):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, I, H, seed=seed)
    xs = rng.normal(size=(T, B, I))
    targets = rng.normal(size=(T, B, H))
    state0 = random_state(cell, B, rng, requires_grad=True)
    return cell, xs, targets, state0


def weighted_loss(targets):
    # Weights that vary with the step, so a window that used the wrong steps' targets would show.
    w = np.arange(1, T + 1)[:, None, None] / T
    return lambda out, steps: ((out - targets[steps]) ** 2 * w[steps]).sum()


def grads(cell, state0):
    out = {n: p.grad.copy() for n, p in cell.named_parameters()}
    out.update({f"state0.{i}": s.grad.copy() for i, s in enumerate(as_tuple(state0))})
    return out


def clear(cell, state0):
    cell.zero_grad()
    for s in as_tuple(state0):
        s.grad = None


def detach(state):
    parts = tuple(s.detach() for s in as_tuple(state))
    return parts if len(parts) > 1 else parts[0]


def reference(cell, xs, loss_fn, state0, k1, k2):
    """Each window on its own, with cell.step in a Python loop (no run(), no unfold).

    A window counts the losses of steps [w k1, (w+1) k1) and runs from k2 - k1
    steps before them.  The state at a window's start comes from a plain forward pass over the whole
    sequence, detached there, except at step 0, where it is the caller's state0.
    """
    with mg.no_grad():
        states, s = [state0], state0
        for t in range(T):
            s = cell.step(mg.Tensor(xs[t]), s)
            states.append(s)
    losses, stop, w = [], 0, 0
    while stop < T:
        first, stop = w * k1, min(T, (w + 1) * k1)
        start = max(0, first - (k2 - k1))
        s = state0 if start == 0 else detach(states[start])
        outs = []
        for t in range(start, stop):
            s = cell.step(mg.Tensor(xs[t]), s)
            outs.append(cell.output(s))
        loss = loss_fn(mg.stack(outs[first - start:]), slice(first, stop))
        loss.backward()
        losses.append(loss.item())
        w += 1
    return losses


@pytest.mark.parametrize("kind", ["elman", "lstm", "leaky"])
@pytest.mark.parametrize("k", [T, T + 3])
def test_one_window_is_full_bptt(kind, k):
    cell, xs, targets, state0 = setup(kind)
    loss_fn = weighted_loss(targets)
    full = rnn.run(cell, xs, state0)
    loss_fn(full.outputs, slice(0, T)).backward()
    want = grads(cell, state0)
    clear(cell, state0)
    windows = list(rnn.tbptt(cell, xs, loss_fn, k, state0=state0))
    assert len(windows) == 1 and windows[0].steps == slice(0, T)
    got = grads(cell, state0)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("k1,k2", [(1, 1), (2, 2), (3, 3), (2, 3), (2, 5), (3, 4), (1, 7)])
def test_windows_give_the_gradient_of_the_windowed_losses(kind, k1, k2):
    cell, xs, targets, state0 = setup(kind, seed=k1 * 10 + k2)
    loss_fn = weighted_loss(targets)
    want_losses = reference(cell, xs, loss_fn, state0, k1, k2)
    want = grads(cell, state0)
    clear(cell, state0)
    windows = list(rnn.tbptt(cell, xs, loss_fn, k1, k2, state0=state0))
    np.testing.assert_allclose([w.loss.item() for w in windows], want_losses, rtol=1e-12)
    for name, g in grads(cell, state0).items():
        np.testing.assert_allclose(g, want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # Every step's loss is counted once, in order.
    assert [w.steps.start for w in windows] == list(range(0, T, k1))
    assert windows[-1].steps.stop == T
    assert all(w.start == max(0, w.steps.start - (k2 - k1)) for w in windows)
    # With k1 = k2 the windows are disjoint and tile the sequence.
    if k1 == k2:
        assert [w.start for w in windows] == [w.steps.start for w in windows]


def test_truncation_changes_the_gradient():
    # Guards the tests above against a tbptt that silently ran full BPTT.
    cell, xs, targets, state0 = setup("elman")
    loss_fn = weighted_loss(targets)
    list(rnn.tbptt(cell, xs, loss_fn, T, state0=state0))
    full = cell.weight_hh.grad.copy()
    clear(cell, state0)
    list(rnn.tbptt(cell, xs, loss_fn, 2, state0=state0))
    assert not np.allclose(cell.weight_hh.grad, full)


def test_the_graph_marks_the_detached_carried_state():
    cell, xs, targets, state0 = setup("gru")
    windows = list(rnn.tbptt(cell, xs, weighted_loss(targets), 3, 4, state0=state0))
    graphs = [w.result.graph for w in windows]
    assert [g.detached_state0 for g in graphs] == [w.start > 0 for w in windows] == [False, True, True]
    assert [g.window["loss_steps"] for g in graphs] == [(0, 3), (3, 6), (6, 7)]
    assert [g.T for g in graphs] == [w.steps.stop - w.start for w in windows]
    # The carried state really is cut: the second window's state0 leaf is a fresh tensor with no history.
    s0 = graphs[1].state0[0]
    assert windows[1].result.graph.tensors[s0].op is None


def test_an_update_per_window_is_seen_by_the_next_window():
    cell, xs, targets, state0 = setup("elman")
    loss_fn = weighted_loss(targets)
    lr, seen = 0.05, []
    gen = rnn.tbptt(cell, xs, loss_fn, 2, state0=state0.detach())
    prev = None
    for win in gen:
        if prev is not None:
            # Recompute this window by hand from the carried state with the parameters as updated.
            with mg.no_grad():
                s, outs = prev.state, []
                for t in range(win.start, win.steps.stop):
                    s = cell.step(mg.Tensor(xs[t]), s)
                    outs.append(s)
                seen.append((loss_fn(mg.stack(outs), win.steps).item(), win.loss.item()))
        for p in cell.parameters():
            p.data = p.data - lr * p.grad
        cell.zero_grad()
        prev = win
    assert len(seen) == 3
    for want, got in seen:
        assert got == pytest.approx(want, rel=1e-12)


def test_window_state_continues_the_sequence():
    cell, xs, targets, state0 = setup("lstm")
    windows = list(rnn.tbptt(cell, xs, weighted_loss(targets), 3, state0=state0))
    full = rnn.run(cell, xs, state0)
    for w in windows:
        for a, b in zip(as_tuple(w.state), as_tuple(full.states[w.steps.stop - 1])):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-13)
            assert a.op is None and not a.requires_grad


def test_batch_first_gives_the_same_gradients():
    cell, xs, targets, state0 = setup("gru")
    loss_fn = weighted_loss(targets)
    list(rnn.tbptt(cell, xs, loss_fn, 3, state0=state0))
    want = grads(cell, state0)
    clear(cell, state0)
    tb = targets.transpose(1, 0, 2)
    loss_bf = lambda out, steps: loss_fn(out.transpose(1, 0, 2), steps)
    windows = list(rnn.tbptt(cell, xs.transpose(1, 0, 2), loss_bf, 3, state0=state0, batch_first=True))
    assert windows[0].result.outputs.shape == (B, 3, H) and tb.shape[0] == B
    for name, g in grads(cell, state0).items():
        np.testing.assert_allclose(g, want[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("k1,k2,match", [(0, None, "k1"), (3, 2, "k2=2 < k1=3"), (2.0, None, "k1"),
                                         (2, 0, "k2"), (True, None, "k1")])
def test_bad_window_sizes_are_rejected(k1, k2, match):
    cell, xs, targets, _ = setup("elman")
    with pytest.raises(ValueError, match=match):
        next(rnn.tbptt(cell, xs, weighted_loss(targets), k1, k2))


def test_loss_fn_must_return_a_scalar():
    cell, xs, _, _ = setup("elman")
    with pytest.raises(TypeError, match=r"scalar Tensor.*shape \(2, 2, 4\)"):
        next(rnn.tbptt(cell, xs, lambda out, steps: out, 2))


def test_tbptt_loss_sums_the_windows():
    cell, xs, targets, state0 = setup("elman")
    loss_fn = weighted_loss(targets)
    total = rnn.tbptt_loss(cell, xs, loss_fn, 2, state0=state0)
    # With k1 = k2 the losses are forward values only, so they add up to the full sequence's loss.
    assert total == pytest.approx(loss_fn(rnn.run(cell, xs, state0).outputs, slice(0, T)).item(), rel=1e-12)
