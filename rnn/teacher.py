"""Output-to-hidden recurrence and teacher forcing (Goodfellow et al., §10.2.1, Figs. 10.4 and 10.6).

``OutputRecurrentCell(input_size, hidden_size, output_size, classes=False)`` is the net

    h(t) = tanh(b + W y(t-1) + U x(t))
    o(t) = c + V h(t)

whose only recurrence goes from the output back to the hidden units: its step
reads `y_prev` and ignores h(t−1).  It is an ordinary cell of the feedback
mechanism of `rnn.run` (see rnn.rolled.Feedback); what is fed back as y(t−1)
depends on the mode:

* training, teacher-forced (``feed="teacher"``, the default with targets):
  y(t−1) is the TRUE previous target ys[t−1] (y0, zeros by default, before the
  first step; one-hot for class indices).  Nothing then depends on an earlier
  output, so the steps are independent: the gradient needs no trip back
  through time.
* generation, free-running: y(t−1) is the model's own output — o(t−1) itself
  for regression (``feed="output"``), for classification the one-hot of its
  largest entry (``"argmax"``) or of a class drawn from softmax(o(t−1))
  (``"sample"``).  The rolled graph then has a delay from o back into the step.

Parameters (PyTorch-style names for Goodfellow's letters): ``weight_ih`` = U
(H, I), ``weight_oh`` = W (H, O), ``bias_h`` = b (H,), ``weight_ho`` = V
(O, H), ``bias_o`` = c (O,); all start in U(-1/sqrt(H), 1/sqrt(H)).  The loss
is the mean squared error for real targets, cross-entropy for classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg
from minigrad import Tensor

from .cell import Cell
from .run import run


@dataclass
class Generated:
    outputs: Tensor   # (T, B, O): o(t), each computed from what was fed back of o(t-1)
    fed: Tensor       # (T, B, O): what step t received as y(t-1): y0, then o(t-1) or its one-hot choice
    result: object    # the RunResult of the free-running run (its unfolded graph)


class OutputRecurrentCell(Cell):
    """Output-to-hidden recurrent net trained with teacher forcing; see the module docstring."""
    symbols = {"weight_ih": "U", "weight_oh": "W", "bias_h": "b", "weight_ho": "V", "bias_o": "c"}

    def __init__(self, input_size, hidden_size, output_size, classes=False, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        self.output_size, self.classes = int(output_size), bool(classes)
        if self.output_size < 1:
            raise ValueError(f"OutputRecurrentCell: output_size must be positive, got {output_size}")
        H, I, O = self.hidden_size, self.input_size, self.output_size
        self.weight_ih, self.weight_oh, self.bias_h, self.weight_ho, self.bias_o = self._init(
            rng, (H, I), (H, O), (H,), (O, H), (O,))

    def step(self, x, h, y_prev):
        """h(t) = tanh(b + W y(t-1) + U x(t)); h(t-1) is not read: the recurrence runs through the output."""
        return (self.bias_h + y_prev @ self.weight_oh.T + x @ self.weight_ih.T).tanh()

    def output(self, h):
        """o(t) = c + V h(t)."""
        return h @ self.weight_ho.T + self.bias_o

    def loss(self, o, y):
        return mg.cross_entropy(o, y) if self.classes else mg.mse_loss(o, y)

    def teacher_forced(self, xs, ys, y0=None, *, backend="auto"):
        """Outputs (T, B, O) with the true previous target fed back at every step."""
        return run(self, xs, targets=ys, feed="teacher", y0=y0, backend=backend).outputs

    def train_loss(self, xs, ys, y0=None, loss=None, *, backend="auto"):
        """The teacher-forced training loss: the mean over steps of loss(o(t), y(t)), or loss(outputs, ys)."""
        res = run(self, xs, targets=ys, feed="teacher", y0=y0, reduction="mean", backend=backend)
        return res.loss if loss is None else loss(res.outputs, ys)

    def generate(self, xs, y0=None, *, sample=False, seed=0, backend="auto"):
        """Free-running outputs: each step is fed the model's own previous output (for classes, the
        one-hot of its argmax, or of a sample with `sample=True`)."""
        feed = ("sample" if sample else "argmax") if self.classes else "output"
        res = run(self, xs, feed=feed, y0=y0, seed=seed, backend=backend)
        return Generated(res.outputs, res.fed, res)

    def __repr__(self):
        return (f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}{', classes=True' if self.classes else ''})")
