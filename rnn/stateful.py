"""A cell that remembers its state between calls: one step at a time.

``Stateful(cell, state=None, *, backend="auto")``, then ``y = s.step(x)``.

This is the step API of Karpathy's min-char-rnn (``rnn.step(x)``).  Each call
is one step of `rnn.run` on a length-1 sequence, so roughly::

    class Stateful:
        def step(self, x):                     # x: (B, input_size), or (input_size,) for one example
            self.state = cell.step(x, self.state or cell.initial_state(B))
            return cell.output(self.state)     # (B, H), or (H,) for one example

Properties:

* ``s.step(x1); s.step(x2); ...`` gives the same outputs and final state as
  ``rnn.run(cell, stack([x1, x2, ...]))``: the state carried from one call to
  the next is the tensor the previous step produced, so gradients flow back
  across calls (backpropagation through every step taken since the last
  `reset` or `detach`).
* ``s.detach()`` keeps the state's values but cuts it from the graph, the
  cut of truncated BPTT (see `rnn.tbptt`); ``s.reset()`` forgets the state, so
  the next step starts from ``cell.initial_state(B)``.
* ``s.state`` is readable and settable: a Tensor (or a tuple of Tensors for a
  cell with several state tensors, e.g. (h, c) for an LSTM) of shape
  (B, ...); arrays are converted, and a 1-d state is taken as a batch of one.
  The batch of ``x`` must match the batch of the state it continues.
"""
from __future__ import annotations

import numpy as np

from minigrad import Tensor

from .rolled import as_tuple, check_state, detach_state
from .run import run


class Stateful:
    """Step a cell one input at a time, carrying its state; see the module docstring."""

    def __init__(self, cell, state=None, *, backend="auto"):
        self.cell = cell
        self.backend = backend
        self.last = None          # the RunResult of the latest step (its one-step graph, the backend that ran)
        self.state = state

    @property
    def state(self):
        """The current state (None before the first step or after `reset`)."""
        return self._state

    @state.setter
    def state(self, value):
        if value is None:
            self._state = None
            return
        parts = tuple(self._as_state_tensor(v) for v in as_tuple(value))
        self._state = parts[0] if len(parts) == 1 and not isinstance(value, (tuple, list)) else parts

    def _as_state_tensor(self, v):
        if not isinstance(v, Tensor):
            v = Tensor(v, dtype=self.cell.dtype)
        return v.reshape(1, *v.shape) if v.ndim == 1 else v

    def reset(self):
        """Forget the state; the next step starts from the cell's initial state."""
        self._state = None
        self.last = None
        return self

    def detach(self):
        """Keep the state's values, cut its history: gradients stop here (truncated BPTT)."""
        if self._state is not None:
            self._state = detach_state(self._state)
        return self

    def step(self, x):
        """One step: x (B, input_size) -> output (B, H); x (input_size,) -> output (H,)."""
        name = type(self.cell).__name__
        if x is None or isinstance(x, (str, bytes, dict, set)):
            raise TypeError(f"Stateful({name}).step: x must be an array of shape (B, {self.cell.input_size}) "
                            f"or ({self.cell.input_size},), got {type(x).__name__}")
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.cell.dtype if np.ndim(x) else None)
        single = x.ndim == 1
        if x.ndim not in (1, 2):
            raise ValueError(f"Stateful({name}).step: x must have shape (B, {self.cell.input_size}) or "
                             f"({self.cell.input_size},) for one example, got shape {x.shape}")
        if single:
            x = x.reshape(1, x.shape[0])
        if self._state is not None:
            # Checked here, not left to run(), so the message names Stateful.state rather than state0.
            check_state(self.cell, f"Stateful.state (continued by x of shape {x.shape})",
                        self._state, self.cell.initial_state(x.shape[0]))
        result = run(self.cell, x.reshape(1, *x.shape), self._state, backend=self.backend)
        self.last = result
        self._state = result.state
        y = result.outputs[0]
        return y[0] if single else y

    def __call__(self, x):
        return self.step(x)

    def __repr__(self):
        shapes = None if self._state is None else [s.shape for s in as_tuple(self._state)]
        return f"Stateful({self.cell!r}, state shapes={shapes})"
