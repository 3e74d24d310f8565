"""Shared by the rnn tests: a custom cell written outside the package, and small NumPy references."""
import numpy as np

import minigrad as mg
import rnn
from rnn.rolled import as_tuple
from minigrad.nn import Parameter


class LeakyCell(rnn.Cell):
    """A leaky-integrator unit, h' = (1 - a) h + a tanh(W x + U h + b), a = sigmoid(leak) per unit.

    Defined here rather than in the package, to show the machinery works on any
    cell written with engine ops.
    """

    def __init__(self, input_size, hidden_size, rng=None):
        super().__init__(input_size, hidden_size)
        self.weight_ih, self.weight_hh, self.bias = self._init(
            rng, (hidden_size, input_size), (hidden_size, hidden_size), (hidden_size,))
        self.leak = Parameter(np.random.default_rng(7).uniform(-1, 1, hidden_size))

    def step(self, x, h):
        a = self.leak.sigmoid()
        return (1 - a) * h + a * (x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias).tanh()


def leaky_numpy(cell, xs, h):
    a = 1 / (1 + np.exp(-cell.leak.data))
    out = []
    for x in xs:
        h = (1 - a) * h + a * np.tanh(x @ cell.weight_ih.data.T + h @ cell.weight_hh.data.T + cell.bias.data)
        out.append(h)
    return np.stack(out)


def make_cell(kind, I, H, seed=0):
    rng = np.random.default_rng(seed)
    return {"elman": lambda: rnn.ElmanCell(I, H, rng=rng),
            "lstm": lambda: rnn.LSTMCell(I, H, rng=rng),
            "gru": lambda: rnn.GRUCell(I, H, rng=rng),
            "leaky": lambda: LeakyCell(I, H, rng=rng)}[kind]()


CELL_KINDS = ("elman", "lstm", "gru", "leaky")


def random_state(cell, B, rng, requires_grad=False):
    parts = tuple(mg.Tensor(rng.uniform(-1, 1, s.shape), requires_grad=requires_grad)
                  for s in as_tuple(cell.initial_state(B)))
    return parts if len(parts) > 1 else parts[0]


def python_loop(cell, xs, state):
    """The reference semantics of run(): cell.step in a plain loop."""
    outs = []
    for t in range(xs.shape[0]):
        state = cell.step(mg.Tensor(xs[t]), state)
        outs.append(cell.output(state))
    return mg.stack(outs), state
