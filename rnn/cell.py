"""Recurrent cells: a step function written with engine ops, plus its parameters.

A cell computes one step, ``step :: (x, state) -> state``, where ``x`` is
(B, input_size) and ``state`` is a tensor or a tuple of tensors that keeps its
shape from step to step.  Write a custom cell by subclassing `Cell` and
defining `step` (and, if the state is not one (B, hidden_size) tensor per name
in `state_names`, `initial_state`).  A network adds what it emits and what it
is trained on at each step (Goodfellow et al. Fig. 10.3)::

    def output(self, h):  return h @ self.V.T + self.c       # o(t); the state itself by default
    def loss(self, o, y): return mg.cross_entropy(o, y)       # L(t), a scalar; with rnn.run(..., targets=ys)

A step reads more than x(t) and its state by naming parameters (Goodfellow et al. §§10.2.4, 10.4, 10.9)::

    def step(self, x, h, context):   # what rnn.run(..., context=c) passes every step: a vector, encoder outputs
    def step(self, x, h, t):         # the step index, a float scalar tensor (clocked, multi-time-scale units)
    def step(self, x, h, y_prev):    # y(t−1): the previous output, or the previous target when teacher-forced

and a class attribute ``delays = {"h_slow": 2}`` makes it read that state from
two steps back (§10.9.1); ``display_name``, if a cell has one, is what pictures
call it instead of its class name.  x is None for a network run without inputs
(``rnn.run(cell, None, steps=T, batch=B)``, vector-to-sequence).

The built-in cells use PyTorch's parameter names, layouts and gate orders, so
weights move between the two with `load_state_dict` and plain arrays.
"""
from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod

import numpy as np

import minigrad as mg
from minigrad.nn import Module, Parameter


EXTRAS = ("context", "t", "y_prev")  # what a step may read besides (x, state), by parameter name
_READS: dict = {}


class Cell(Module, metaclass=ABCMeta):
    state_names = ("h",)

    def __init__(self, input_size, hidden_size, dtype=np.float64):
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        if self.input_size < 0 or self.hidden_size < 1:
            raise ValueError(f"{type(self).__name__}: input_size must be >= 0 (0: no per-step input) and "
                             f"hidden_size positive, got {input_size} and {hidden_size}")
        self._dtype = np.dtype(dtype)

    @classmethod
    def reads(cls, method="step"):
        """Which of `context`, `t`, `y_prev` the step (or `output`) names as parameters after its own
        (self, x, state) (or (self, state))."""
        key = (cls, method)
        got = _READS.get(key)
        if got is None:
            names = list(inspect.signature(getattr(cls, method)).parameters)[3 if method == "step" else 2:]
            got = _READS[key] = frozenset(n for n in EXTRAS if n in names)
        return got

    @property
    def dtype(self):
        for v in vars(self).values():  # the first own parameter is parameters()[0]; this is 5x faster
            if isinstance(v, Parameter):
                return v.dtype
        params = self.parameters()
        return params[0].dtype if params else self._dtype

    @abstractmethod
    def step(self, x, state):
        """One step: (x of shape (B, input_size), state) -> new state of the same structure and shapes."""

    def forward(self, x, state):
        return self.step(x, state)

    def initial_state(self, batch):
        dtype = self.dtype
        zeros = [mg.zeros(shape, dtype=dtype) for shape in self._zero_shapes(batch)]
        return zeros[0] if len(zeros) == 1 else tuple(zeros)

    def _zero_shapes(self, batch):
        """The shapes of Cell.initial_state's zeros: one (batch, hidden_size) per state name (rnn.run
        checks a given state0 against them without making the zeros)."""
        return [(batch, self.hidden_size)] * len(self.state_names)

    def output(self, state):
        """What the cell emits at each step, o(t): the hidden state (the first state tensor) by default."""
        return state[0] if isinstance(state, tuple) else state

    @property
    def emits(self):
        """The width of o(t), what a layer stacked on this one reads: output_size if the cell has one,
        else hidden_size."""
        return getattr(self, "output_size", None) or self.hidden_size

    def loss(self, output, target):
        """The loss at one step, L(t) = loss(o(t), y(t)), a scalar Tensor.  Not defined here: a cell
        that defines it is trained with rnn.run(cell, xs, targets=ys) (see rnn.run)."""
        raise NotImplementedError(f"{type(self).__name__} defines no loss(o, y)")

    def rolled(self, batch=1, targets=None, **how):
        """This cell's step (and output, and loss with `targets`) as a graph whose loop is closed by a
        delay; `how`: context, feed, inputs, seed (see rnn.rolled)."""
        from .rolled import rolled
        return rolled(self, batch, targets, **how)

    def _init(self, rng, *shapes):
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1 / np.sqrt(self.hidden_size)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
        return [Parameter(rng.uniform(-bound, bound, s).astype(self._dtype)) for s in shapes]

    def _gate_params(self, gates, rng):
        H, I = self.hidden_size, self.input_size
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = self._init(
            rng, (gates * H, I), (gates * H, H), (gates * H,), (gates * H,))

    def _affine(self, x, h):
        """x W_ih^T + b_ih and h W_hh^T + b_hh, the two pre-activations every built-in cell starts from."""
        return x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh

    def __repr__(self):
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"


class ElmanCell(Cell):
    """h(t) = tanh(b + W h(t-1) + U x(t))  (Goodfellow et al., Deep Learning, eqs. 10.8–10.9).

    U is `weight_ih`, W is `weight_hh`, and b = bias_ih + bias_hh, as in torch.nn.RNNCell.
    """
    symbols = {"weight_ih": "U", "weight_hh": "W", "bias_ih": "b", "bias_hh": "b"}

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"ElmanCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._gate_params(1, rng)

    def step(self, x, h):
        a, b = self._affine(x, h)
        return (a + b).tanh() if self.nonlinearity == "tanh" else (a + b).relu()


class LSTMCell(Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), in torch.nn.LSTMCell's layout.

    Gates in the order i, f, g, o:  c' = f*c + i*g,  h' = o*tanh(c').
    The forget gate's bias starts at 1 (bias_ih's f block; bias_hh's is 0), so
    the cell remembers by default (Gers et al. 2000; Goodfellow et al. §10.10.1).
    """
    state_names = ("h", "c")
    symbols = {"weight_ih": "U", "weight_hh": "W", "bias_ih": "b", "bias_hh": "b"}
    gates = "i f g o"   # the rows of U, W and b, gate by gate

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self._gate_params(4, rng)
        H = hidden_size
        self.bias_ih.data[H:2 * H] = 1.0
        self.bias_hh.data[H:2 * H] = 0.0

    def step(self, x, state):
        h, c = state
        a, b = self._affine(x, h)
        i, f, g, o = mg.split(a + b, 4, axis=-1)
        i, f, g, o = i.sigmoid().named("i"), f.sigmoid().named("f"), g.tanh().named("g"), o.sigmoid().named("o")
        c = f * c + i * g
        return o * c.tanh(), c


class GRUCell(Cell):
    """Gated recurrent unit (Cho et al. 2014), in torch.nn.GRUCell's layout.

    Gates r, z, n with the reset gate applied after the recurrent product:
    n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),  h' = (1-z)*n + z*h.
    """
    symbols = {"weight_ih": "U", "weight_hh": "W", "bias_ih": "b", "bias_hh": "b"}
    gates = "r z n"
    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self._gate_params(3, rng)

    def step(self, x, h):
        a, b = self._affine(x, h)
        ar, az, an = mg.split(a, 3, axis=-1)
        br, bz, bn = mg.split(b, 3, axis=-1)
        r, z = (ar + br).sigmoid().named("r"), (az + bz).sigmoid().named("z")
        n = (an + r * bn).tanh().named("n")
        return (1 - z) * n + z * h
