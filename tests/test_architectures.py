"""Deep, bidirectional and echo state networks; PyTorch's weights in; frozen parameters.

Each against NumPy loops of the cells' equations (or hand-composed single-cell runs) to 1e-10 in
float64, and gradchecked on hypothesis-drawn small sizes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from minigrad_cli.tasks import mackey_glass
from rnn.rolled import as_tuple
from rnn_helpers import elman_numpy, gru_numpy, lstm_numpy

KINDS = {"lstm": (rnn.LSTMCell, 4), "gru": (rnn.GRUCell, 3), "rnn": (rnn.ElmanCell, 1)}


def numpy_run(kind, p, xs, state):
    """(outputs (T, B, H), final state tuple) of one PyTorch-style layer in NumPy."""
    if kind == "lstm":
        out, h, c = lstm_numpy(p, xs, *state)
        return out, (h, c)
    if kind == "gru":
        out, h = gru_numpy(p, xs, state[0])
        return out, (h,)
    out, h = elman_numpy(p, xs, state[0], np.tanh)
    return out, (h,)


def torch_dict(kind, rng, I, H, layers, bidirectional):
    """A state dict as torch.nn.LSTM/GRU/RNN(I, H, num_layers=layers, bidirectional=...) names it."""
    gates, sd = KINDS[kind][1], {}
    for layer in range(layers):
        n_in = I if layer == 0 else H * (2 if bidirectional else 1)
        for suffix in ("", "_reverse") if bidirectional else ("",):
            sd[f"weight_ih_l{layer}{suffix}"] = rng.uniform(-0.5, 0.5, (gates * H, n_in))
            sd[f"weight_hh_l{layer}{suffix}"] = rng.uniform(-0.5, 0.5, (gates * H, H))
            sd[f"bias_ih_l{layer}{suffix}"] = rng.uniform(-0.5, 0.5, gates * H)
            sd[f"bias_hh_l{layer}{suffix}"] = rng.uniform(-0.5, 0.5, gates * H)
    return sd


def torch_numpy(kind, sd, xs, layers, bidirectional):
    """What the PyTorch layer computes, layer by layer in NumPy: (outputs, final states per direction)."""
    T, B, _ = xs.shape
    H = sd["weight_hh_l0"].shape[1]
    zero = lambda: tuple(np.zeros((B, H)) for _ in range(2 if kind == "lstm" else 1))  # noqa: E731
    x, finals = xs, []
    for layer in range(layers):
        p = {k: sd[f"{k}_l{layer}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        fwd, f_final = numpy_run(kind, p, x, zero())
        finals.append(f_final)
        if bidirectional:
            q = {k: sd[f"{k}_l{layer}_reverse"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            bwd, b_final = numpy_run(kind, q, x[::-1], zero())
            finals.append(b_final)
            fwd = np.concatenate([fwd, bwd[::-1]], axis=-1)
        x = fwd
    return x, finals


@pytest.mark.parametrize("backend", ["graph", "auto"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_pytorch_weights_load_and_compute_what_pytorch_computes(kind, layers, bidirectional, backend):
    rng = np.random.default_rng(layers * 10 + bidirectional)
    sd = torch_dict(kind, rng, 3, 4, layers, bidirectional)
    model = rnn.from_torch(kind, sd)
    xs = rng.normal(size=(5, 2, 3))
    res = rnn.run(model, xs, backend=backend)
    want, finals = torch_numpy(kind, sd, xs, layers, bidirectional)
    np.testing.assert_allclose(res.outputs.data, want, rtol=1e-10, atol=1e-12)
    got = [s.data for s in as_tuple(res.state)]
    np.testing.assert_allclose(np.concatenate(got, axis=-1), np.concatenate([a for f in finals for a in f], axis=-1),
                               rtol=1e-10, atol=1e-12)
    if backend == "auto" and not bidirectional:
        assert res.backend == "numba"            # a stack of cells compiles like one cell


def test_pytorch_itself_agrees_where_it_is_installed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for kind, cls in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)):
        layer = cls(3, 4, num_layers=2, bidirectional=True).double()
        xs = torch.randn(6, 2, 3, dtype=torch.float64)
        out, h_n = layer(xs)
        res = rnn.run(rnn.from_torch(kind, layer.state_dict()), xs.numpy())
        np.testing.assert_allclose(res.outputs.data, out.detach().numpy(), rtol=1e-10, atol=1e-12)
        h_n = (h_n[0] if kind == "lstm" else h_n).detach().numpy()   # (layers * directions, B, H)
        ours = [s.data for s in as_tuple(res.state)]
        hs = ours[::2] if kind == "lstm" else ours                   # h of each direction, layer by layer
        np.testing.assert_allclose(np.stack(hs), h_n, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad, words", [
    ({"weight_hr_l0": np.ones((4, 2))}, "projections"),
    ({"weight_ih_l0": np.ones((8, 3)), "weight_hh_l0": np.ones((8, 4))}, "4 x hidden"),
    ({"weight_xx_l0": np.ones(3)}, "not a weight"),
    ({}, "no weights"),
])
def test_a_state_dict_that_is_not_pytorch_s_is_a_clear_error(bad, words):
    with pytest.raises(ValueError, match=words):
        rnn.from_torch("lstm", bad)


@settings(max_examples=10)
@given(T=st.integers(1, 4), B=st.integers(1, 2), I=st.integers(1, 3), H=st.integers(1, 3),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["stacked", "bidirectional"]))
def test_deep_and_bidirectional_gradients_match_finite_differences(T, B, I, H, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "stacked":
        cell = rnn.Stacked([rnn.LSTMCell(I, H, rng=rng), rnn.GRUCell(H, H + 1, rng=rng)])
    else:
        cell = rnn.Bidirectional(rnn.GRUCell(I, H, rng=rng), rnn.ElmanCell(I, H, rng=rng))
    xs = mg.tensor(rng.uniform(-1, 1, (T, B, I)), requires_grad=True)
    state0 = tuple(mg.tensor(rng.uniform(-0.5, 0.5, s.shape), requires_grad=True)
                   for s in as_tuple(cell.initial_state(B)))
    assert mg.gradcheck(lambda xs, *rest: rnn.run(cell, xs, rest[:len(state0)]).outputs,
                        [xs, *state0, *cell.parameters()])


def test_a_stack_is_one_network_with_a_state_per_layer():
    rng = np.random.default_rng(0)
    deep = rnn.Stacked([rnn.LSTMCell(2, 3, rng=rng), rnn.ElmanCell(3, 4, rng=rng)])
    assert deep.state_names == ("h1", "c1", "h2") and deep.emits == 4
    g = deep.rolled()
    assert [lp.name for lp in g.loops] == ["h1", "c1", "h2"] and all(lp.delay == 1 for lp in g.loops)
    assert sorted(dict(deep.named_parameters())) == sorted(
        f"cells.{i}.{n}" for i in (0, 1) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    with pytest.raises(ValueError, match="layer 2 .* reads input_size=5, but layer 1 .* emits 3"):
        rnn.Stacked([rnn.LSTMCell(2, 3), rnn.ElmanCell(5, 4)])


def test_the_backward_chain_runs_from_the_end():
    rng = np.random.default_rng(1)
    bi = rnn.Bidirectional(rnn.ElmanCell(2, 3, rng=rng), rnn.ElmanCell(2, 3, rng=rng))
    g = rnn.unfold(bi.rolled(), 4)
    b_loop = next(lp for lp in g.rolled.loops if lp.name == "h_b")
    assert b_loop.delay == -1 and g.state0[1] == g.node_at(b_loop.input, 3)   # it starts at the last step
    readers = [e.dst for e in g.rolled.edges if e.src == b_loop.input]
    for t in range(3):                                                        # step t reads step t + 1
        assert all(g.node_at(b_loop.output, t + 1) in g.inputs_of(g.node_at(r, t)) for r in readers)
    assert g.final[1] == g.node_at(b_loop.output, 0)                          # and ends at step 0
    # Feeding the backward state into the forward chain would make a cycle of zero total delay.

    class Tangled(rnn.Cell):
        state_names = ("f", "b")
        delays = {"f": 1, "b": -1}

        def __init__(self):
            super().__init__(2, 3)
            self.W = Parameter(np.eye(3) * 0.5)

        def initial_state(self, batch):
            return mg.zeros(batch, 3), mg.zeros(batch, 3)

        def step(self, x, state):
            f, b = state
            return (f @ self.W + b).tanh(), (b @ self.W + f).tanh()

    with pytest.raises(mg.CycleError, match="forward and backward"):
        Tangled().rolled()


# --- frozen parameters ------------------------------------------------------------------------

def test_frozen_parameters_are_left_alone_by_every_part_of_training(tmp_path):
    rng = np.random.default_rng(2)
    cell = rnn.ElmanCell(2, 3, rng=rng)
    cell.weight_hh.requires_grad = False
    before = cell.weight_hh.data.copy()
    opt = mg.optim.Adam(cell.parameters(), lr=0.1)
    xs = mg.tensor(rng.normal(size=(4, 2, 2)))
    for backend in ("graph", "numba"):
        res = rnn.run(cell, xs, backend=backend)
        assert res.backend == backend
        opt.zero_grad()
        res.outputs.sum().backward()
        assert cell.weight_hh.grad is None and cell.weight_ih.grad is not None
        mg.clip_grad_norm_(cell.parameters(), 0.1)
        opt.step()
    np.testing.assert_array_equal(cell.weight_hh.data, before)
    mg.save(tmp_path / "c.npz", cell, opt)
    again = rnn.ElmanCell(2, 3)
    mg.load(tmp_path / "c.npz", again)
    np.testing.assert_array_equal(again.weight_hh.data, before)
    cell.freeze()
    assert not any(p.requires_grad for p in cell.parameters()) and cell.trainable() == []
    assert cell.unfreeze().trainable() == cell.parameters()


def test_a_parameter_frozen_after_its_gradient_was_computed_is_not_updated_or_clipped():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(7))
    opt = mg.optim.SGD(cell.parameters(), lr=1.0)
    rnn.run(cell, mg.tensor(np.ones((3, 1, 2)))).outputs.sum().backward()
    stale = cell.weight_hh.grad.copy()
    cell.weight_hh.requires_grad = False          # frozen by hand: its old grad is still there
    before = cell.weight_hh.data.copy()
    want = np.sqrt(sum(float(np.sum(p.grad ** 2)) for p in cell.trainable()))
    assert mg.clip_grad_norm_(cell.parameters(), 1e-3) == pytest.approx(want, rel=1e-12)  # the frozen grad not counted
    np.testing.assert_array_equal(cell.weight_hh.grad, stale)   # clipping left it alone
    opt.step()
    np.testing.assert_array_equal(cell.weight_hh.data, before)


def test_gradcheck_checks_the_parameters_that_learn_and_only_those():
    rng = np.random.default_rng(8)
    cell = rnn.GRUCell(2, 2, rng=rng)
    cell.weight_hh.requires_grad = False
    xs = mg.tensor(rng.uniform(-1, 1, (3, 1, 2)))
    result = mg.gradcheck(lambda *ps: rnn.run(cell, xs).outputs, cell.parameters())
    assert result.checked == sum(p.size for p in cell.trainable()) < sum(p.size for p in cell.parameters())


def test_a_frozen_weight_is_a_kernel_input_with_the_same_numbers():
    rng = np.random.default_rng(3)
    cell = rnn.LSTMCell(3, 4, rng=rng)
    cell.weight_ih.requires_grad = False
    xs = mg.tensor(rng.normal(size=(5, 2, 3)), requires_grad=True)
    got = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        xs.grad = None
        res = rnn.run(cell, xs, backend=backend)
        res.outputs.sum().backward()
        assert res.backend == backend and cell.weight_ih.grad is None
        got.append((res.outputs.data.copy(), cell.weight_hh.grad.copy(), xs.grad.copy()))
    for a, b in zip(*got):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --- echo state networks ----------------------------------------------------------------------

def esn_numpy(W_in, W, b, a, xs, h):
    hs = []
    for x in xs:
        h = (1 - a) * h + a * np.tanh(x @ W_in.T + h @ W.T + b)
        hs.append(h)
    return np.stack(hs)


def ridge_numpy(H, Y, lam):
    X = np.concatenate([H, np.ones((len(H), 1))], axis=1)
    reg = lam * np.eye(X.shape[1])
    reg[-1, -1] = 0
    return np.linalg.solve(X.T @ X + reg, X.T @ Y)   # (N + 1, K)


def test_an_echo_state_network_equals_its_numpy_form_on_mackey_glass():
    series = mackey_glass(700)
    xs, ys = series[:-1].reshape(-1, 1, 1), series[1:].reshape(-1, 1, 1)   # one-step-ahead prediction
    esn = rnn.EchoState(1, 60, spectral_radius=0.9, leak=0.5, rng=np.random.default_rng(4))
    assert not any(p.requires_grad for p in esn.parameters())
    radius = np.max(np.abs(np.linalg.eigvals(esn.weight_hh.data)))
    assert abs(radius - 0.9) < 1e-9
    res = rnn.run(esn, xs)
    assert res.backend == "numba"                  # the frozen reservoir compiles: weights without gradients
    want = esn_numpy(esn.weight_ih.data, esn.weight_hh.data, esn.bias.data, 0.5, xs, np.zeros((1, 60)))
    np.testing.assert_allclose(res.outputs.data, want, rtol=1e-10, atol=1e-12)

    washout, split = 100, 500
    readout = rnn.fit_readout(res.outputs.data[:split], ys[:split], ridge=1e-4, washout=washout)
    Wc = ridge_numpy(want[washout:split, 0], ys[washout:split, 0], 1e-4)
    pred = readout(res.outputs[split:].reshape(-1, 60)).data
    np.testing.assert_allclose(pred, want[split:, 0] @ Wc[:-1] + Wc[-1], rtol=1e-10, atol=1e-12)
    nrmse = np.sqrt(np.mean((pred - ys[split:, 0]) ** 2)) / np.std(ys[split:, 0])
    assert nrmse < 0.2                             # it predicts: better than the series' own spread


def test_a_readout_can_also_learn_by_gradient_on_the_reservoir_states():
    series = mackey_glass(300, seed=1)
    xs, ys = series[:-1].reshape(-1, 1, 1), series[1:].reshape(-1, 1, 1)
    esn = rnn.EchoState(1, 30, leak=0.5, rng=np.random.default_rng(5))
    states = rnn.run(esn, xs).outputs.data[50:]
    head = mg.nn.Linear(30, 1, rng=np.random.default_rng(6))
    opt = mg.optim.Adam(head.parameters(), lr=0.05)
    H, Y = mg.tensor(states.reshape(-1, 30)), mg.tensor(ys[50:].reshape(-1, 1))
    start = mg.mse_loss(head(H), Y).item()
    for _ in range(300):
        loss = mg.mse_loss(head(H), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * start


def test_an_echo_state_network_with_its_readout_fits_predicts_and_compiles():
    series = mackey_glass(700)
    xs, ys = series[:-1].reshape(-1, 1, 1), series[1:].reshape(-1, 1, 1)
    esn = rnn.EchoState(1, 40, output_size=1, leak=0.5, rng=np.random.default_rng(9))
    assert [n for n, p in esn.named_parameters() if p.requires_grad] == ["V", "c"]
    esn.fit(xs[:500], ys[:500], ridge=1e-4, washout=100)
    res = rnn.run(esn, xs)
    assert res.backend == "numba"
    H = np.stack([s[0].data for s in res.states])[:, 0]
    np.testing.assert_allclose(H, esn_numpy(esn.weight_ih.data, esn.weight_hh.data, esn.bias.data, 0.5, xs,
                                            np.zeros((1, 40)))[:, 0], rtol=1e-10, atol=1e-12)
    Wc = ridge_numpy(H[100:500], ys[100:500, 0], 1e-4)    # (the normal equations amplify 1e-16 differences)
    np.testing.assert_allclose(res.outputs.data[:, 0], H @ Wc[:-1] + Wc[-1], rtol=1e-10, atol=1e-12)
    # ... or its readout learns by gradient, through the kernel, while the reservoir stays put
    esn.V.data[...] = 0
    esn.c.data[...] = 0
    reservoir = esn.weight_hh.data.copy()
    opt = mg.optim.Adam(esn.trainable(), lr=0.02)
    losses = []
    for _ in range(40):
        res = rnn.run(esn, xs[:120], targets=ys[:120], reduction="mean")
        opt.zero_grad()
        res.loss.backward()
        opt.step()
        losses.append(res.loss.item())
    assert res.backend == "numba" and esn.weight_hh.grad is None
    np.testing.assert_array_equal(esn.weight_hh.data, reservoir)
    assert losses[-1] < 0.1 * losses[0]
    with pytest.raises(TypeError, match="no readout"):
        rnn.EchoState(1, 5).fit(xs[:10], ys[:10])
