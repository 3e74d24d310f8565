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


# --- the built-in cells' equations, as PyTorch's documentation writes them, in NumPy -----------------

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_numpy(p, xs, h, c):
    # torch.nn.LSTM documentation, gate blocks in the order i, f, g, o.
    W_ii, W_if, W_ig, W_io = np.split(p["weight_ih"], 4)
    W_hi, W_hf, W_hg, W_ho = np.split(p["weight_hh"], 4)
    b_ii, b_if, b_ig, b_io = np.split(p["bias_ih"], 4)
    b_hi, b_hf, b_hg, b_ho = np.split(p["bias_hh"], 4)
    hs = []
    for x in xs:
        i = sigmoid(x @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
        f = sigmoid(x @ W_if.T + b_if + h @ W_hf.T + b_hf)
        g = np.tanh(x @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
        o = sigmoid(x @ W_io.T + b_io + h @ W_ho.T + b_ho)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs), h, c


def gru_numpy(p, xs, h):
    # torch.nn.GRU documentation, gate blocks r, z, n; r multiplies (W_hn h + b_hn).
    W_ir, W_iz, W_in = np.split(p["weight_ih"], 3)
    W_hr, W_hz, W_hn = np.split(p["weight_hh"], 3)
    b_ir, b_iz, b_in = np.split(p["bias_ih"], 3)
    b_hr, b_hz, b_hn = np.split(p["bias_hh"], 3)
    hs = []
    for x in xs:
        r = sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


def elman_numpy(p, xs, h, act):
    hs = []
    for x in xs:
        h = act(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
        hs.append(h)
    return np.stack(hs), h
