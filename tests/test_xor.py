"""End to end: a Linear-tanh-Linear MLP on the engine learns XOR with each optimizer."""
import numpy as np
import pytest

import minigrad as mg
from mlp_helpers import MLP, OPTIMIZERS, X, Y


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
