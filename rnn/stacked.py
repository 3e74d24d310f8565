"""Deep recurrent nets: layers of cells, each reading the one below at the same step (Goodfellow et
al. §10.5, Fig. 10.13a).

``Stacked([cell1, cell2, ...])`` is itself a cell::

    h1(t) = cell1.step(x(t), h1(t−1))
    h2(t) = cell2.step(o1(t), h2(t−1))        o1(t) = cell1.output(h1(t))
    ...
    o(t)  = the top cell's output

Its state is every layer's state in order (an LSTM layer brings h and c), named after the layer
they belong to (h1, c1, h2, ...), so `rnn.run`, the kernels and the pictures treat it like any
cell: one rolled graph with a delay per layer's state, one unfolding, one picture; the final state
holds every layer's.  A layer may be any cell, Bidirectional included.  The other deep forms of the
figure — a deeper transition inside the step (b) and skip connections around it (c) — are a cell's
step written that way (see examples/deep_rnn.py).
"""
from __future__ import annotations

from .cell import Cell
from .rolled import as_tuple


class Stacked(Cell):
    def __init__(self, cells):
        cells = list(cells)
        if not cells or not all(isinstance(c, Cell) for c in cells):
            raise TypeError(f"Stacked: needs a list of rnn cells, got {[type(c).__name__ for c in cells] or 'none'}")
        for i, (below, above) in enumerate(zip(cells, cells[1:])):
            if above.input_size != below.emits:
                raise ValueError(f"Stacked: layer {i + 2} ({type(above).__name__}) reads input_size="
                                 f"{above.input_size}, but layer {i + 1} ({type(below).__name__}) emits {below.emits}")
        for i, c in enumerate(cells):
            if c.reads():
                raise TypeError(f"Stacked: layer {i + 1} ({type(c).__name__}) reads {', '.join(sorted(c.reads()))}; "
                                "a stacked layer reads the layer below and its own state only")
        super().__init__(cells[0].input_size, cells[-1].hidden_size, cells[-1].dtype)
        self.cells = cells
        self._counts = [len(as_tuple(c.initial_state(1))) for c in cells]
        self.state_names = tuple(f"{name}{i + 1}" for i, c in enumerate(cells)
                                 for name in _names(c, self._counts[i]))
        self.delays = {f"{name}{i + 1}": d for i, c in enumerate(cells)
                       for name, d in (getattr(c, "delays", None) or {}).items()}

    @property
    def emits(self):
        return self.cells[-1].emits

    @property
    def symbols(self):
        """Each layer's symbols numbered by layer: U1, W1, U2, ..."""
        return {f"cells.{i}.{name}": f"{sym}{i + 1}" for i, c in enumerate(self.cells)
                for name, sym in _symbols(c).items()}

    def layers(self, state):
        """The flat state split into one part per layer (a tensor, or a tuple for a cell of several)."""
        parts, at = [], 0
        for n in self._counts:
            chunk = as_tuple(state)[at:at + n]
            parts.append(chunk if n > 1 else chunk[0])
            at += n
        return parts

    def initial_state(self, batch):
        return tuple(s for c in self.cells for s in as_tuple(c.initial_state(batch)))

    def step(self, x, state):
        new = []
        for cell, s in zip(self.cells, self.layers(state)):
            s = cell.step(x, s)
            new += list(as_tuple(s))
            x = cell.output(s)
        return tuple(new)

    def output(self, state):
        return self.cells[-1].output(self.layers(state)[-1])

    def __repr__(self):
        return f"Stacked({', '.join(repr(c) for c in self.cells)})"


def _symbols(cell):
    """The cell's symbols for its parameters' names, the names themselves where it declares none."""
    declared = getattr(cell, "symbols", None) or {}
    return {name: declared.get(name, name) for name, _ in cell.named_parameters()}


def _names(cell, n):
    names = tuple(cell.state_names)
    return names if len(names) == n else tuple(f"s{i}" for i in range(n))
