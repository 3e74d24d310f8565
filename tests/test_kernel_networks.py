"""Networks of the notes the kernels compile, not covered elsewhere, against the explicit graph: an echo
state network (its reservoir frozen: an input of the kernels with no gradient, only the readout learns; the targets,
which here require grad, get theirs)
and leaky units whose rate per unit is learned (Goodfellow et al. §10.8, §10.9.2)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


class LearnedLeak(rnn.Cell):
    """h(t) = (1 − α) ⊙ h(t−1) + α ⊙ tanh(U x(t) + W h(t−1) + b), α = sigmoid(ρ) one learned rate per unit."""

    def __init__(self, I, H, dtype, rng):
        super().__init__(I, H, dtype)
        self.U, self.W = (Parameter((rng.standard_normal(s) / np.sqrt(s[1])).astype(dtype)) for s in [(H, I), (H, H)])
        self.b, self.rho = (Parameter(rng.standard_normal(H).astype(dtype)) for _ in range(2))

    def step(self, x, h):
        a = self.rho.sigmoid()
        return (1.0 - a) * h + a * (x @ self.U.T + h @ self.W.T + self.b).tanh()


def both(cell, xs, backend, targets=None):
    """Outputs, and the gradients of xs, the parameters and (real-valued ones) the targets."""
    cell.zero_grad()
    x = mg.Tensor(xs, requires_grad=True)
    ys = None if targets is None else mg.Tensor(targets, requires_grad=True)
    r = rnn.run(cell, x, targets=ys, backend=backend)
    assert r.backend == backend and r.fallback is None
    loss = r.loss if ys is not None else (r.outputs * r.outputs).sum()
    loss.backward()
    return [r.outputs.data, x.grad] + [p.grad for p in cell.parameters()] + ([] if ys is None else [ys.grad])


def assert_same(cell, xs, dtype, **kw):
    for i, (want, got) in enumerate(zip(both(cell, xs, "graph", **kw), both(cell, xs, "numba", **kw))):
        if want is None:
            assert got is None, i        # a frozen weight gets no gradient on either
        else:
            np.testing.assert_allclose(got, want, **TOL[dtype], err_msg=f"value {i}")


@settings(max_examples=6)
@given(T=st.integers(1, 6), B=st.integers(1, 3), N=st.integers(1, 8), K=st.integers(1, 3),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_an_echo_state_network_with_its_reservoir_frozen_equals_the_graph(T, B, N, K, dtype, seed):
    rng = np.random.default_rng(seed)
    esn = rnn.EchoState(2, N, output_size=K, leak=0.5, rng=rng, dtype=dtype)
    assert not any(p.requires_grad for p in (esn.weight_hh, esn.bias))
    xs = rng.standard_normal((T, B, 2)).astype(dtype)
    ys = rng.standard_normal((T, B, K)).astype(dtype)
    assert_same(esn, xs, dtype, targets=ys)


@settings(max_examples=6)
@given(T=st.integers(1, 6), B=st.integers(1, 3), H=st.integers(1, 5), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_leaky_units_with_a_learned_rate_per_unit_equal_the_graph(T, B, H, dtype, seed):
    rng = np.random.default_rng(seed)
    assert_same(LearnedLeak(3, H, dtype, rng), rng.standard_normal((T, B, 3)).astype(dtype), dtype)
