"""Truncated backpropagation through time: a long sequence in windows.

``tbptt(cell, xs, loss_fn, k1, k2=None, state0=None, *, batch_first=False, backend="auto")``
is a generator of `Window` s, one per parameter update.

TBPTT(k1, k2) (Williams & Peng 1990; Sutskever 2013, §2.8.6): every k1 steps,
backpropagate through the last k2 steps.

* k1 — steps between parameter updates: the window advances by k1 steps, and
  each window's loss covers its k1 new steps (every step's loss is counted
  exactly once over the whole sequence).
* k2 — how many steps back gradients flow: a window runs forward from the
  state k2 steps before its end (k2 - k1 steps before its first loss step;
  for a last, shorter window too), detached there, so no gradient crosses
  that cut.  k2 defaults to k1, the common case of disjoint windows of k steps.
  k2 > k1 gives overlapping windows whose first k2 - k1 steps only carry
  gradient back (they are recomputed, and their losses belong to the window
  before).  k2 < k1 is rejected: part of a window's loss would have nowhere
  to send its gradient that the window does not already cover.

Roughly this Python loop::

    def tbptt(cell, xs, loss_fn, k1, k2=k1, state0=None):
        T, state = len(xs), {0: state0}                  # state[t]: the state before step t
        for w, stop in enumerate(range(k1, T + k1, k1)):
            stop, first = min(stop, T), stop - k1        # loss on steps [first, stop)
            start = max(0, first - (k2 - k1))            # run (and backprop) from here
            s = state[start] if start == 0 else detach(state[start])
            result = run(cell, xs[start:stop], s)        # result.states: the state after each step
            loss = loss_fn(result.outputs[first - start:], slice(first, stop))
            loss.backward()                              # grads accumulate into the parameters
            state[...] = the states at the later windows' starts
            yield Window(w, slice(first, stop), start, loss, result, state after step stop - 1)

The generator yields after `loss.backward()`, so a training loop updates once
per window and the next window already runs on the updated parameters::

    for win in rnn.tbptt(cell, xs, lambda out, steps: mse(out, ys[steps]), k1=20):
        opt.step(); opt.zero_grad()

If the loop does not zero the gradients, they accumulate into the sum of the
windows' gradients.  With k1 >= T there is one window: full BPTT.  The
carried state of a later window is the forward value computed by an earlier
window (with the parameters of that time), detached; its unfolded graph says
so in ``graph.detached_state0`` (True), and ``graph.window``
records the window, so the visualizer can draw the cut.  The user's
``state0`` is not detached: the first window's gradient reaches it.
"""
from __future__ import annotations

from dataclasses import dataclass

from minigrad import Tensor, no_grad

from .rolled import detach_state
from .run import check_inputs, run


@dataclass
class Window:
    index: int        # 0, 1, ...
    steps: slice      # the time steps whose loss this window counts, [first, stop)
    start: int        # the first step run (and backpropagated through): max(0, steps.start - (k2 - k1))
    loss: Tensor      # the window's loss, already backpropagated
    result: object    # the RunResult of the window's steps [start, stop); outputs time-major or batch-first as xs
    state: object     # the state after step stop - 1, detached: pass it as state0 to continue the sequence


def _state_after(cell, result, xs, start, s0, t, backend):
    """The state after step t - 1 of a window run from step `start` and state `s0`."""
    if t == start + result.outputs.shape[0]:
        return result.state
    if result.states:   # the graph backend keeps every step's state
        s = result.states[t - start - 1]
        return s if len(s) > 1 else s[0]
    with no_grad():     # a backend that keeps only the final state: recompute up to t
        return run(cell, xs[start:t], s0, backend=backend).state


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"tbptt: {name} must be a positive integer number of steps, got {v!r}")
    return v


def tbptt(cell, xs, loss_fn, k1, k2=None, state0=None, *, batch_first=False, backend="auto"):
    """Truncated BPTT over `xs`, one yielded `Window` per update; see the module docstring.

    loss_fn(outputs, steps) -> scalar Tensor, where `outputs` are the cell's
    outputs at the time steps `steps` (a slice into the full sequence, to
    index targets with), shaped (len, B, H), or (B, len, H) with batch_first.
    """
    k1 = _positive_int("k1", k1)
    k2 = k1 if k2 is None else _positive_int("k2", k2)
    if k2 < k1:
        raise ValueError(f"tbptt: k2={k2} < k1={k1} is not supported; k2 (steps of backpropagation) "
                         f"must be at least k1 (steps between updates), e.g. k2=k1={k1}")
    if not callable(loss_fn):
        raise TypeError(f"tbptt: loss_fn must be callable as loss_fn(outputs, steps), got {type(loss_fn).__name__}")
    # Validate once up front so a bad input fails before any window runs; time-major from here on.
    xs, state = check_inputs(cell, xs, state0, batch_first)
    T = xs.shape[0]
    carried = {0: state}   # step t -> the state before step t, for the windows still to start there
    stops = list(range(k1, T, k1)) + [T]
    for w, stop in enumerate(stops):
        first = w * k1
        start = max(0, first - (k2 - k1))
        carried = {t: s for t, s in carried.items() if t >= start}  # earlier cuts are behind every later window
        s0 = carried[start]
        result = run(cell, xs[start:stop], s0, backend=backend)
        for t in {max(0, nxt_first - (k2 - k1)) for nxt_first in range(first + k1, T, k1)}:
            if start < t <= stop:
                carried[t] = detach_state(_state_after(cell, result, xs, start, s0, t, backend))
        outputs = result.outputs[first - start:]
        if batch_first:
            result.outputs = result.outputs.transpose(1, 0, 2)
            outputs = outputs.transpose(1, 0, 2)
        loss = loss_fn(outputs, slice(first, stop))
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise TypeError(f"tbptt: loss_fn must return a scalar Tensor, got "
                            f"{type(loss).__name__}{' of shape ' + str(loss.shape) if isinstance(loss, Tensor) else ''}")
        if loss.requires_grad:
            loss.backward()
        if result.graph is not None:
            result.graph.detached_state0 = start > 0
            result.graph.window = {"window": w, "k1": k1, "k2": k2, "start": start,
                                   "loss_steps": (first, stop), "T": T}
        yield Window(w, slice(first, stop), start, loss, result, detach_state(result.state))


def tbptt_loss(cell, xs, loss_fn, k1, k2=None, state0=None, **kw):
    """Run every window of `tbptt` (gradients accumulate); return the summed loss as a float."""
    return sum(win.loss.item() for win in tbptt(cell, xs, loss_fn, k1, k2, state0, **kw))

