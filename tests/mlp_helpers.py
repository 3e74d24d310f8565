"""The small XOR MLP and optimizer settings that the toolkit tests share."""
import numpy as np

from minigrad import nn, optim

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.logical_xor(X[:, :1], X[:, 1:]).astype(np.float64)


class MLP(nn.Module):
    """Linear-tanh-Linear; `extra` adds an unused parameter, for state-mismatch tests."""

    def __init__(self, hidden=4, seed=0, dtype=np.float64, extra=False):
        rng = np.random.default_rng(seed)
        self.fc1 = nn.Linear(2, hidden, rng=rng, dtype=dtype)
        self.fc2 = nn.Linear(hidden, 1, rng=rng, dtype=dtype)
        if extra:
            self.scale = nn.Parameter(np.ones(1, dtype=dtype))

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


OPTIMIZERS = {
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
    "adam": lambda ps: optim.Adam(ps, lr=0.02),
}
