"""Bidirectional recurrent nets (Schuster & Paliwal 1997; Goodfellow et al. §10.3, Fig. 10.11).

``Bidirectional(forward, backward)`` is a cell whose step runs both::

    h(t) = forward.step(x(t), h(t−1))          a chain from left to right
    g(t) = backward.step(x(t), g(t+1))         a chain from right to left
    o(t) = concat(forward.output(h(t)), backward.output(g(t)))   PyTorch's layout: forward half first

The backward chain's state is delayed by −1 step (a delay backward in time), so the rolled graph has
two loops of opposite delays and the unfolding two chains running in opposite directions, o(t)
reading both.  The backward chain starts from its initial state at the last step; its final state
is the one it makes at step 0.  States are named after their chain: h_f, (c_f,) h_b, (c_b).
"""
from __future__ import annotations

import minigrad as mg

from .cell import Cell
from .rolled import as_tuple


class Bidirectional(Cell):
    def __init__(self, forward, backward):
        for c in (forward, backward):
            if not isinstance(c, Cell):
                raise TypeError(f"Bidirectional: needs two rnn cells, got {type(c).__name__}")
            if c.reads():
                raise TypeError(f"Bidirectional: {type(c).__name__} reads {', '.join(sorted(c.reads()))}; each "
                                "direction reads x(t) and its own state only")
        if forward.input_size != backward.input_size:
            raise ValueError(f"Bidirectional: the forward cell reads input_size={forward.input_size}, "
                             f"the backward cell {backward.input_size}")
        super().__init__(forward.input_size, forward.hidden_size, forward.dtype)
        self.forward_cell, self.backward_cell = forward, backward
        self._nf = len(as_tuple(forward.initial_state(1)))
        nb = len(as_tuple(backward.initial_state(1)))
        names_f = _names(forward, self._nf)
        names_b = _names(backward, nb)
        self.state_names = tuple(f"{n}_f" for n in names_f) + tuple(f"{n}_b" for n in names_b)
        self.delays = {**{f"{n}_f": 1 for n in names_f}, **{f"{n}_b": -1 for n in names_b}}

    @property
    def emits(self):
        return self.forward_cell.emits + self.backward_cell.emits

    @property
    def symbols(self):
        """Each direction's symbols marked with its arrow: U→, W→ forward, U←, W← backward."""
        from .stacked import _symbols
        return {**{f"forward_cell.{n}": f"{s}→" for n, s in _symbols(self.forward_cell).items()},
                **{f"backward_cell.{n}": f"{s}←" for n, s in _symbols(self.backward_cell).items()}}

    def halves(self, state):
        """(the forward chain's state, the backward chain's)."""
        s = as_tuple(state)
        f, b = s[:self._nf], s[self._nf:]
        return (f if len(f) > 1 else f[0]), (b if len(b) > 1 else b[0])

    def initial_state(self, batch):
        return (tuple(as_tuple(self.forward_cell.initial_state(batch)))
                + tuple(as_tuple(self.backward_cell.initial_state(batch))))

    def step(self, x, state):
        f, b = self.halves(state)
        return tuple(as_tuple(self.forward_cell.step(x, f))) + tuple(as_tuple(self.backward_cell.step(x, b)))

    def output(self, state):
        f, b = self.halves(state)
        return mg.concatenate([self.forward_cell.output(f), self.backward_cell.output(b)], axis=-1)

    def __repr__(self):
        return f"Bidirectional({self.forward_cell!r}, {self.backward_cell!r})"


def _names(cell, n):
    names = tuple(cell.state_names)
    return names if len(names) == n else tuple(f"s{i}" for i in range(n))
