"""Bidirectional cells, and stacks holding them, on the kernels: one loop per direction and layer,
then the whole net's head over all steps at once.

The rolled graph of `rnn.Bidirectional` has two loops of opposite delays, and nothing of one chain
reads the other: h(t) depends on x(1..t), g(t) on x(t..T).  So the forward chain runs in the
forward cell's kernels over x(1..T), the backward chain in the backward cell's over x(T..1), and
g(t) is that run's step T − t.  o(t) and L(t), which read both, run afterwards over all steps at
once (rnn.kernels.head), as for a one-chain network.

A stack (rnn.Stacked) with a bidirectional layer cannot be one loop either way, but each layer reads
the one below only at the same step: layer by layer, each over all steps, is the same computation.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

from minigrad import Tensor
from minigrad.primitives import getitem

from ..rolled import as_tuple
from .fingerprint import kept_while_unchanged
from .ir import UnsupportedCellError

_TRACED = weakref.WeakKeyDictionary()  # cell -> {((batch, targets), fingerprint): ((rolled, heads), array copies)}


def _traced(cell, batch, targets):
    """The whole cell's rolled graph and its head, traced once while the cell is unchanged."""
    from .binding import Heads

    def trace():
        rolled = cell.rolled(batch, targets)
        return rolled, Heads(rolled)
    return kept_while_unchanged(_TRACED, cell, (batch, targets), trace)


def _reversed(t):
    """t[::-1] along time, recorded when it needs a gradient."""
    return getitem(t, index=(slice(None, None, -1),)) if t.requires_grad else Tensor(t._data[::-1])


class _Joined(Sequence):
    """states[t] of a composite: each part's state at step t (at step T − 1 − t for a part run in
    reverse), side by side."""

    def __init__(self, parts, reverse):
        self.parts, self.reverse = parts, reverse

    def __len__(self):
        return len(self.parts[0])

    def __getitem__(self, t):
        if not -len(self) <= t < len(self):
            raise IndexError(t)
        t %= len(self)
        return tuple(s for part, rev in zip(self.parts, self.reverse) for s in part[len(self) - 1 - t if rev else t])


def _finish(cell, xs, sup, rolled, heads, per_state, steps, state0, final):
    """The composite's KernelRunResult from its states stacked over time: its head, its losses."""
    from .binding import KernelRunResult, attach_losses, known_tensors_of
    T = xs.shape[0]
    stacked = {lp.output: s for lp, s in zip(rolled.loops, per_state)}
    stacked[rolled.x] = xs
    for what, why in (("output", heads.why_not_output), ("loss", sup is not None and heads.why_not_loss)):
        if why and not (what == "output" and rolled.output in stacked):
            raise UnsupportedCellError(f"numba backend: the {type(cell).__name__} net's {what} cannot run over "
                                       f"all steps at once: {why}")
    named = dict(cell.named_parameters())
    outputs = (stacked[rolled.output] if rolled.output in stacked
               else heads.output.run({**heads.fixed(named), **stacked}, T)[rolled.output])
    result = KernelRunResult(outputs, None, None, "numba", steps,
                             unfold_args=(rolled, T, None, known_tensors_of(named, state0, steps, None)))
    result.state = final
    result.per_state, result.per_step_outputs = per_state, None
    result.stacked = {**stacked, rolled.output: outputs}
    if sup is not None:
        attach_losses(result, cell, heads, rolled, sup, T)
    return result


def run_layers(cell, xs, state0, sup, run_one):
    """cell: an rnn.Stacked; each layer run over all steps by run_one(layer, xs, state0), in turn."""
    rolled, heads = _traced(cell, xs.shape[1], sup and sup.spec)
    x, per_state, parts, finals = xs, [], [], []
    for layer, s0 in zip(cell.cells, cell.layers(state0)):
        r = run_one(layer, x, s0)
        per_state += r.per_state
        parts.append(r.states)
        finals += as_tuple(r.state)
        x = r.outputs
    steps = _Joined(parts, [False] * len(parts))
    return _finish(cell, xs, sup, rolled, heads, per_state, steps, tuple(as_tuple(state0)), tuple(finals))


def run_bidirectional(cell, xs, state0, sup, run_one):
    """cell: an rnn.Bidirectional; run_one(cell, xs, state0) runs one chain's cell in its kernels.
    Returns a KernelRunResult, as the kernels' run of any cell does."""
    rolled, heads = _traced(cell, xs.shape[1], sup and sup.spec)
    f0, b0 = cell.halves(state0)
    fwd = run_one(cell.forward_cell, xs, f0)
    bwd = run_one(cell.backward_cell, _reversed(xs), b0)
    per_state = list(fwd.per_state) + [_reversed(s) for s in bwd.per_state]
    steps = _Joined([fwd.states, bwd.states], [False, True])
    final = tuple(as_tuple(fwd.state)) + tuple(as_tuple(bwd.state))  # g's last state is made at step 0
    return _finish(cell, xs, sup, rolled, heads, per_state, steps, tuple(as_tuple(f0)) + tuple(as_tuple(b0)), final)


__all__ = ["run_bidirectional", "run_layers"]
