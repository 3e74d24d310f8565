"""Built-in cells against formulas written out independently, and their initialisation."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from rnn_helpers import LeakyCell, elman_numpy, gru_numpy, leaky_numpy, lstm_numpy, sigmoid


@pytest.fixture(params=["graph", "numba"])
def backend(request):
    """Each equation test runs on the explicit DAG and on the generated kernels alike."""
    return request.param


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 3, 4, 6
    return rng, rng.normal(size=(T, B, I)), rng.normal(size=(B, H)), rng.normal(size=(B, H))


def test_lstm_matches_pytorch_equations(data, backend):
    rng, xs, h0, c0 = data
    cell = rnn.LSTMCell(4, 6, rng=rng)
    # The f-block bias starts at 1; perturb it so a mixed-up gate order cannot go unnoticed.
    cell.bias_hh.data[:] = rng.normal(size=cell.bias_hh.shape)
    res = rnn.run(cell, xs, (mg.tensor(h0), mg.tensor(c0)), backend=backend)
    want, h, c = lstm_numpy(cell.state_dict(), xs, h0, c0)
    np.testing.assert_allclose(res.outputs.data, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.state[0].data, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.state[1].data, c, rtol=1e-12, atol=1e-12)


def test_gru_matches_pytorch_equations(data, backend):
    rng, xs, h0, _ = data
    cell = rnn.GRUCell(4, 6, rng=rng)
    res = rnn.run(cell, xs, mg.tensor(h0), backend=backend)
    want, h = gru_numpy(cell.state_dict(), xs, h0)
    np.testing.assert_allclose(res.outputs.data, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.state.data, h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity,act", [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))])
def test_elman_matches_its_equation(data, nonlinearity, act, backend):
    rng, xs, h0, _ = data
    cell = rnn.ElmanCell(4, 6, nonlinearity=nonlinearity, rng=rng)
    res = rnn.run(cell, xs, mg.tensor(h0), backend=backend)
    want, _ = elman_numpy(cell.state_dict(), xs, h0, act)
    np.testing.assert_allclose(res.outputs.data, want, rtol=1e-12, atol=1e-12)


def test_custom_cell_runs_like_its_formula(data, backend):
    rng, xs, h0, _ = data
    cell = LeakyCell(4, 6, rng=rng)
    res = rnn.run(cell, xs, mg.tensor(h0), backend=backend)
    np.testing.assert_allclose(res.outputs.data, leaky_numpy(cell, xs, h0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls,gates", [(rnn.ElmanCell, 1), (rnn.LSTMCell, 4), (rnn.GRUCell, 3)])
def test_pytorch_layout_shapes_and_uniform_init(cls, gates):
    I, H = 5, 16
    cell = cls(I, H, rng=np.random.default_rng(0))
    shapes = {k: v.shape for k, v in cell.named_parameters()}
    assert shapes == {"weight_ih": (gates * H, I), "weight_hh": (gates * H, H),
                      "bias_ih": (gates * H,), "bias_hh": (gates * H,)}
    bound = 1 / np.sqrt(H)
    for name, p in cell.named_parameters():
        vals = p.data.copy()
        if cls is rnn.LSTMCell and name.startswith("bias"):
            vals = np.delete(vals, np.s_[H:2 * H])  # the forget block is set on purpose, checked below
        assert np.all(np.abs(vals) <= bound), name
        # Spread over the interval, not squeezed near 0: a wrong bound (1/H, 1/I) would fail this.
        assert np.abs(vals).max() > 0.8 * bound, name


def test_lstm_effective_forget_bias_is_one():
    H = 7
    cell = rnn.LSTMCell(3, H, rng=np.random.default_rng(1))
    f = cell.bias_ih.data[H:2 * H] + cell.bias_hh.data[H:2 * H]
    np.testing.assert_array_equal(f, np.ones(H))
    # Only the forget block: the i, g, o biases stay random.
    others = cell.bias_ih.data[np.r_[0:H, 2 * H:4 * H]]
    assert np.unique(others).size == others.size


def test_lstm_forget_bias_makes_a_fresh_cell_remember():
    # With zero input weights the forget gate is sigmoid(1) ~ 0.73, so c decays slowly instead of halving.
    cell = rnn.LSTMCell(2, 3, rng=np.random.default_rng(2))
    for p in (cell.weight_ih, cell.weight_hh):
        p.data[:] = 0
    cell.bias_ih.data[:3] = -50  # input gate shut: c only decays
    cell.bias_hh.data[:3] = 0
    c0 = np.ones((1, 3))
    res = rnn.run(cell, np.zeros((1, 1, 2)), (mg.zeros(1, 3), mg.tensor(c0)))
    np.testing.assert_allclose(res.state[1].data, sigmoid(1.0) * c0 * np.ones(3), rtol=1e-12)
