"""Echo state networks: a fixed random reservoir and a trained linear readout (Jaeger 2001;
Goodfellow et al. §10.8), of leaky-integrator units (§10.9.2).

``EchoState(input_size, reservoir_size, spectral_radius=0.9, leak=0.3, ...)`` is a cell::

    h(t) = (1 − a) h(t−1) + a tanh(W_in x(t) + W h(t−1) + b)

whose W_in, W and b are drawn at random and frozen (Parameters with requires_grad=False: saved,
drawn and compiled like any weight, never learnt).  W is uniform in [−1, 1] on a random `density`
of its entries, then scaled so that its spectral radius — its largest |eigenvalue| — is ρ: below 1
the reservoir forgets its start (the echo state property).  W_in is uniform in [−s, s].

Only a readout learns.  With `output_size=K` the cell has one, o(t) = V h(t) + c (trainable
Parameters, zero until fitted, with a squared-error loss), so `rnn.run`, the kernels and the
pictures see the whole network.  Fitted in closed form, by ridge regression on the states of a run,

    [V c] = Yᵀ [H 1] ([H 1]ᵀ [H 1] + λ diag(1, ..., 1, 0))⁻¹      (the bias is not shrunk),

by `esn.fit(xs, ys, ridge, washout)`, or `fit_readout(states, targets, ridge)` for a standalone
`minigrad.nn.Linear`; or trained by gradient like any network: `rnn.run(esn, xs, targets=ys)`,
`loss.backward()`, an optimizer over `esn.trainable()` (only V and c).
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import Tensor
from minigrad.nn import Linear, Parameter

from .cell import Cell


class EchoState(Cell):
    symbols = {"weight_ih": "W_in", "weight_hh": "W", "bias": "b", "V": "V", "c": "c"}

    def __init__(self, input_size, reservoir_size, output_size=None, spectral_radius=0.9, leak=0.3,
                 input_scale=1.0, bias_scale=0.2, density=0.1, rng=None, dtype=np.float64):
        super().__init__(input_size, reservoir_size, dtype)
        if not 0 < leak <= 1:
            raise ValueError(f"EchoState: leak must lie in (0, 1], got {leak}")
        if not 0 < density <= 1 or spectral_radius < 0:
            raise ValueError(f"EchoState: density must lie in (0, 1] and spectral_radius be >= 0, "
                             f"got {density} and {spectral_radius}")
        rng = rng if rng is not None else np.random.default_rng()
        N = reservoir_size
        W = rng.uniform(-1, 1, (N, N)) * (rng.random((N, N)) < density)
        radius = np.max(np.abs(np.linalg.eigvals(W))) if N else 0.0
        W = W * (spectral_radius / radius) if radius > 0 else W
        self.weight_ih = Parameter(rng.uniform(-input_scale, input_scale, (N, input_size)).astype(dtype),
                                   requires_grad=False)
        self.weight_hh = Parameter(W.astype(dtype), requires_grad=False)
        self.bias = Parameter(rng.uniform(-bias_scale, bias_scale, N).astype(dtype), requires_grad=False)
        self.leak = float(leak)
        if output_size is not None:
            if int(output_size) < 1:
                raise ValueError(f"EchoState: output_size must be positive, got {output_size}")
            self.output_size = int(output_size)
            self.V = Parameter(np.zeros((self.output_size, N), dtype))
            self.c = Parameter(np.zeros(self.output_size, dtype))

    def step(self, x, h):
        a = self.leak
        return (1 - a) * h + a * (x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias).tanh()

    def output(self, h):
        return h @ self.V.T + self.c if hasattr(self, "V") else h

    def loss(self, o, y):
        if not hasattr(self, "V"):
            return super().loss(o, y)
        return mg.mse_loss(o, y)

    def fit(self, xs, ys, ridge=1e-6, washout=0):
        """Fit the readout V, c by ridge regression from the reservoir's states over `xs` (T, B, I)
        to `ys` (T, B, K), leaving out the first `washout` steps; returns self."""
        if not hasattr(self, "V"):
            raise TypeError("EchoState.fit: this reservoir has no readout; make it with output_size=K")
        from .run import run
        res = run(self, xs)
        states = np.stack([s[0].data if isinstance(s, tuple) else s.data for s in res.states])
        readout = fit_readout(states, ys, ridge, washout)
        self.load_state_dict({**self.state_dict(), "V": readout.weight.data, "c": readout.bias.data})
        return self

    def __repr__(self):
        head = f", output_size={self.output_size}" if hasattr(self, "V") else ""
        return (f"EchoState(input_size={self.input_size}, reservoir_size={self.hidden_size}{head}, "
                f"leak={self.leak})")


def fit_readout(states, targets, ridge=1e-6, washout=0):
    """A Linear readout fitted to map `states` to `targets` by ridge regression (see the module).

    states: (T, B, N) or (M, N); targets: (T, B, K) or (M, K), arrays or tensors.  washout: the first
    steps of a (T, B, N) run to leave out, while the reservoir forgets its initial state."""
    H, Y = _rows(states, washout, "states"), _rows(targets, washout, "targets")
    if len(H) != len(Y):
        raise ValueError(f"fit_readout: {len(H)} rows of states but {len(Y)} rows of targets")
    if not len(H):
        raise ValueError(f"fit_readout: no rows left after a washout of {washout} steps")
    X = np.concatenate([H, np.ones((len(H), 1), H.dtype)], axis=1)
    penalty = np.full(X.shape[1], float(ridge))
    penalty[-1] = 0.0
    Wc = np.linalg.solve(X.T @ X + np.diag(penalty), X.T @ Y).T   # (K, N + 1)
    readout = Linear(H.shape[1], Y.shape[1], dtype=H.dtype)
    readout.load_state_dict({"weight": Wc[:, :-1].astype(H.dtype), "bias": Wc[:, -1].astype(H.dtype)})
    return readout


def _rows(a, washout, what):
    a = np.asarray(a._data if isinstance(a, Tensor) else a)
    a = a if a.dtype.kind == "f" else a.astype(np.float64)
    if a.ndim == 3:
        return a[washout:].reshape(-1, a.shape[-1])
    if a.ndim == 2:
        return a[washout:]
    raise ValueError(f"fit_readout: {what} must be (T, B, N) or (rows, N), got shape {a.shape}")
