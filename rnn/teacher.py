"""Output-to-hidden recurrence and teacher forcing (Goodfellow et al., §10.2.1, Figs. 10.4 and 10.6).

``OutputRecurrentCell(input_size, hidden_size, output_size)`` is the net

    h(t) = tanh(b + W y(t-1) + U x(t))
    o(t) = c + V h(t)

whose only recurrence goes from the output back to the hidden units.  What is
fed back as y(t-1) depends on the mode:

* ``teacher_forced(xs, ys, y0=None)`` / ``train_loss(xs, ys, y0=None)`` —
  training: y(t-1) is the TRUE previous target ys[t-1] (y0, zeros by
  default, before the first step).  Nothing then depends on an earlier
  output, so the T steps are independent: they run as one batched step over
  T*B rows, with no backpropagation through time at all.  Roughly::

      y_prev = concat([y0[None], ys[:-1]])       # (T, B, O): the targets, shifted one step
      outputs = step(xs, y_prev)                 # every step at once
      loss = mse(outputs, ys)

* ``generate(xs, y0=None)`` — test time, free-running: y(t-1) is the model's
  own output o(t-1).  The carried state is then the output itself, so this is
  `rnn.run` on the cell (``step :: (x, o(t-1)) -> o(t)``), with the rolled
  graph's delay edge from o back into the step, and its unfolding::

      o = y0
      for x in xs:
          o = step(x, o)                         # its own previous output goes back in

Outputs are real vectors fed back as they are (regression, compared with an
MSE loss by default); a classifier would feed back a one-hot prediction
instead, which has no gradient and is outside this cell.

Parameters (PyTorch-style names for Goodfellow's letters): ``weight_ih`` = U
(H, I), ``weight_oh`` = W (H, O), ``bias_h`` = b (H,), ``weight_ho`` = V
(O, H), ``bias_o`` = c (O,); all start in U(-1/sqrt(H), 1/sqrt(H)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg
from minigrad import Tensor
from minigrad.errors import ShapeError

from .cell import Cell
from .run import check_inputs, run


@dataclass
class Generated:
    outputs: Tensor   # (T, B, O): o(t), each computed from o(t-1)
    fed: Tensor       # (T, B, O): what step t received as y(t-1): y0, then outputs[:-1]
    result: object    # the RunResult of the free-running run (its unfolded graph)


class OutputRecurrentCell(Cell):
    """Output-to-hidden recurrent net trained with teacher forcing; see the module docstring."""

    state_names = ("o",)

    def __init__(self, input_size, hidden_size, output_size, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self.output_size = int(output_size)
        if self.output_size < 1:
            raise ValueError(f"OutputRecurrentCell: output_size must be positive, got {output_size}")
        H, I, O = self.hidden_size, self.input_size, self.output_size
        self.weight_ih, self.weight_oh, self.bias_h, self.weight_ho, self.bias_o = self._init(
            rng, (H, I), (H, O), (H,), (O, H), (O,))

    def initial_state(self, batch):
        return mg.zeros(batch, self.output_size, dtype=self.dtype)

    def hidden(self, x, y_prev):
        """h(t) = tanh(b + W y(t-1) + U x(t))."""
        return (self.bias_h + y_prev @ self.weight_oh.T + x @ self.weight_ih.T).tanh()

    def step(self, x, y_prev):
        """o(t) = c + V h(t): the output, which is also the state carried when free-running."""
        return self.hidden(x, y_prev) @ self.weight_ho.T + self.bias_o

    def _check_targets(self, xs, ys, y0):
        name = type(self).__name__
        xs, y0 = check_inputs(self, xs, y0)
        T, B, _ = xs.shape
        if ys is None or isinstance(ys, (str, bytes)):
            raise TypeError(f"{name}: ys must be an array of shape (T, B, output_size) = {(T, B, self.output_size)}, "
                            f"got {type(ys).__name__}")
        ys = ys if isinstance(ys, Tensor) else Tensor(ys, dtype=self.dtype)
        if ys.shape != (T, B, self.output_size):
            raise ShapeError(f"{name}: ys has shape {ys.shape}, expected (T, B, output_size) = "
                             f"{(T, B, self.output_size)} to go with xs of shape {xs.shape}")
        return xs, ys, y0

    def teacher_forced(self, xs, ys, y0=None):
        """Outputs (T, B, O) with the true previous target fed back at every step."""
        xs, ys, y0 = self._check_targets(xs, ys, y0)
        T, B, I = xs.shape
        O = self.output_size
        y_prev = mg.concatenate([y0.reshape(1, B, O), ys[:T - 1]], axis=0) if T > 1 else y0.reshape(1, B, O)
        out = self.step(xs.reshape(T * B, I), y_prev.reshape(T * B, O))
        return out.reshape(T, B, O)

    def train_loss(self, xs, ys, y0=None, loss=mg.mse_loss):
        """The teacher-forced training loss, loss(outputs, ys) (mean squared error by default)."""
        xs, ys, y0 = self._check_targets(xs, ys, y0)
        return loss(self.teacher_forced(xs, ys, y0), ys)

    def generate(self, xs, y0=None, *, backend="auto"):
        """Free-running outputs: each step is fed the model's own previous output."""
        result = run(self, xs, y0, backend=backend)
        T, B, O = result.outputs.shape
        if result.graph is not None and result.graph.tensors:
            fed = mg.stack(_fed_values(result.graph), axis=0)
        else:  # a backend that keeps no graph: what the recurrence feeds back, by construction
            first = self.initial_state(B) if y0 is None else y0
            fed = mg.concatenate([first.reshape(1, B, O), result.outputs[:T - 1]], axis=0)
        return Generated(result.outputs, fed, result)

    def __repr__(self):
        return (f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size})")


def _fed_values(graph):
    """Per step, the value the unfolded graph actually passed into the step's y(t-1) argument."""
    rolled = graph.rolled
    state_in = rolled.loops[0].input
    dst, slot = next((e.dst, e.slot) for e in rolled.edges if e.src == state_in)
    arguments = graph.arguments()
    return [graph.tensors[arguments[graph.node_at(dst, t)][slot]] for t in range(graph.T)]
