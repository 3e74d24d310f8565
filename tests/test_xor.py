"""End to end: a Linear-tanh-Linear MLP on the engine learns XOR with each optimizer."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.logical_xor(X[:, :1], X[:, 1:]).astype(np.float64)


class MLP(nn.Module):
    def __init__(self, hidden, seed):
        rng = np.random.default_rng(seed)
        self.fc1 = nn.Linear(2, hidden, rng=rng)
        self.fc2 = nn.Linear(hidden, 1, rng=rng)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


OPTIMIZERS = {
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
    "adam": lambda ps: optim.Adam(ps, lr=0.02),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_learns_xor(name, seed):
    model = MLP(hidden=8, seed=seed)
    opt = OPTIMIZERS[name](model.parameters())
    losses = []
    for _ in range(300):
        loss = mg.mse_loss(model(mg.tensor(X)), mg.tensor(Y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.1, "the untrained net should not already solve XOR"
    assert losses[-1] < 0.01, f"{name}: loss {losses[-1]:.4f} after {len(losses)} steps"
    pred = model(mg.tensor(X)).data
    assert ((pred > 0.5) == (Y > 0.5)).all()
