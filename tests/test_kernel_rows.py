"""Reductions over the features inside a step, on the kernels: softmax, log-softmax, layer norm, a max
shift, means, sums of the state or of x(t), and ops on their (B, 1) results — each drawn by hypothesis
into a step, which must equal the explicit graph (outputs, states and every gradient, per-step states
included) to 1e-10 in float64 and 1e-4 in float32."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.kernels.passes import make_plan
from tests.test_codegen import assert_same

MIXES = {
    "softmax": lambda c, a, x, h: mg.softmax(a, axis=-1) * 2.0,
    "log_softmax": lambda c, a, x, h: mg.log_softmax(a, axis=-1) * 0.3,
    "layer_norm": lambda c, a, x, h: c.layer_norm(a),
    "max_shift": lambda c, a, x, h: a - a.max(axis=-1, keepdims=True),
    "mean_state": lambda c, a, x, h: a + mg.mean(h, axis=-1, keepdims=True),
    "sum_input": lambda c, a, x, h: a * (x * x).sum(axis=-1, keepdims=True).tanh(),
    "tempered": lambda c, a, x, h: a - mg.logsumexp(a * c.temp, axis=-1, keepdims=True) * c.temp,
}


class Normed(rnn.Cell):
    """a = [x, h] W^T; h' = tanh(mix(a)) + h/2, mix one of MIXES: a step whose values pass through a
    reduction over the hidden axis and back."""

    def __init__(self, I, H, mix, rng=None, dtype=np.float64):
        super().__init__(I, H, dtype)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.W = Parameter(rng.normal(0, 0.6, (H, I + H)).astype(dtype))
        if mix == "layer_norm":   # only the parameters the step reads: every parameter gets a gradient
            self.gain = Parameter(rng.normal(1, 0.1, H).astype(dtype))
        if mix == "tempered":
            self.temp = Parameter(np.asarray(rng.uniform(0.5, 1.5), dtype))
        self.mix = mix

    def layer_norm(self, a):
        mu = mg.mean(a, axis=-1, keepdims=True)
        d = a - mu
        return d / (mg.mean(d * d, axis=-1, keepdims=True) + 1e-3) ** 0.5 * self.gain

    def step(self, x, h):
        a = mg.concatenate([x, h], axis=-1) @ self.W.T
        # scaled into tanh's unsaturated range: where tanh saturates, 1 − tanh² keeps only the digits in
        # which the kernels' float32 tanh (within 4.3 ulps, call-free) and NumPy's (within 1) differ
        return (MIXES[self.mix](self, a, x, h) * 0.4).tanh() + h * 0.5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=30)
@given(mix=st.sampled_from(sorted(MIXES)), T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 4),
       H=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_a_reduction_in_the_step_runs_in_the_kernels_as_on_the_graph(dtype, mix, T, B, I, H, seed):
    cell = Normed(I, H, mix, np.random.default_rng(seed), dtype)
    assert_same(cell, T, B, seed, dtype)


def test_softmax_makes_phases_around_its_two_reductions():
    plan = make_plan(Normed(3, 5, "softmax").rolled(2))
    reds = [(ph.index, plan.nodes[r].op) for ph in plan.phases for r in ph.rows if plan.nodes[r].kind == "red"]
    assert reds == [(2, "max"), (3, "sum")]          # the max shift, then the sum of exponentials
    assert all(ph.nodes for ph in plan.phases[1:])  # each followed by a fused loop reading its row values


def test_a_nan_in_a_row_spreads_as_numpy_max_does():
    cell = Normed(2, 3, "max_shift")
    xs = np.ones((2, 1, 2))
    xs[0, 0, 1] = np.nan
    a, b = (rnn.run(cell, xs, backend=k).outputs.data for k in ("graph", "numba"))
    assert np.isnan(a).all() and np.isnan(b).all()
