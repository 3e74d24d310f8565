"""o(t) and L(t) over all steps at once (rnn.kernels.head) against the explicit graph, step by step.

Outputs built from hypothesis-drawn chains of ops — element-wise, reductions, reshapes, transposes,
slices, the softmax family — and either loss, at every step or some: the kernels' run must give the
graph's outputs, losses and gradients, and record a number of ops that does not grow with T.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from minigrad.walk import toposort

HEAD_OPS = {
    "tanh": lambda o: o.tanh(),
    "exp": lambda o: (o * -0.5).exp(),
    "center": lambda o: o - mg.mean(o, axis=-1, keepdims=True),
    "log_softmax": lambda o: mg.log_softmax(o, axis=-1),
    "softmax": lambda o: mg.softmax(o, axis=-1) * 3.0,
    "max": lambda o: o - o.max(axis=-1, keepdims=True),
    "halves": lambda o: o.reshape(o.shape[0], 2, o.shape[1] // 2).transpose(0, 2, 1).reshape(o.shape[0], -1),
    "slice_cat": lambda o: mg.concatenate([o[:, 2:], o[:, :2]], axis=1),
    "transpose": lambda o: o.transpose().transpose(),
    "sigmoid": lambda o: o.sigmoid() + o,
}


class Headed(rnn.Cell):
    """An Elman step with an output made of `ops` after h V^T + c, and a cross-entropy or MSE loss."""

    def __init__(self, I, H, K, ops, loss, rng):
        super().__init__(I, H)
        self.W = Parameter(rng.normal(0, 0.5, (H, I + H)))
        self.V = Parameter(rng.normal(0, 0.5, (K, H)))
        self.c = Parameter(rng.normal(0, 0.2, K))
        self.ops, self.kind = ops, loss

    def step(self, x, h):
        return (mg.concatenate([x, h], axis=-1) @ self.W.T).tanh()

    def output(self, h):
        o = h @ self.V.T + self.c
        for name in self.ops:
            o = HEAD_OPS[name](o)
        return o

    def loss(self, o, y):
        if self.kind == "nll":
            return mg.cross_entropy(o, y)
        return mg.softmax_cross_entropy(o, y) if self.kind == "fused_nll" else mg.mse_loss(o, y)


def run_both(cell, xs, ys, loss_steps, reduction):
    out = {}
    for backend in ("graph", "numba"):
        params = cell.parameters()
        for p in params:
            p.grad = None
        xt = mg.Tensor(xs, requires_grad=True)
        r = rnn.run(cell, xt, targets=ys, loss_steps=loss_steps, reduction=reduction, backend=backend)
        assert r.backend == backend
        r.loss.backward()
        out[backend] = (r, [r.outputs.data.copy(), r.losses.data.copy(), np.array(r.loss.item()), xt.grad]
                        + [p.grad.copy() for p in params])
    return out


@settings(max_examples=25)
@given(ops=st.lists(st.sampled_from(sorted(HEAD_OPS)), max_size=3), loss=st.sampled_from(["nll", "fused_nll", "mse"]),
       T=st.integers(1, 5), B=st.integers(1, 4), H=st.integers(1, 5), K=st.sampled_from([4, 6]),
       where=st.sampled_from(["every", "last", "mask"]), reduction=st.sampled_from(["sum", "mean"]),
       seed=st.integers(0, 2**16))
def test_head_over_time_equals_the_graph_step_by_step(ops, loss, T, B, H, K, where, reduction, seed):
    rng = np.random.default_rng(seed)
    cell = Headed(3, H, K, ops, loss, rng)
    xs = rng.standard_normal((T, B, 3))
    ys = rng.integers(0, K, (T, B)) if loss != "mse" else rng.standard_normal((T, B, K))
    loss_steps = {"every": None, "last": [-1], "mask": rng.random(T) < 0.5}[where]
    if where == "mask":
        loss_steps[rng.integers(T)] = True
    got = run_both(cell, xs, ys, loss_steps, reduction)
    for g, n in zip(got["graph"][1], got["numba"][1]):
        np.testing.assert_allclose(n, g, rtol=1e-10, atol=1e-12)


def recorded_ops(result):
    return len(toposort([result.loss], lambda t: t._parents))


@pytest.mark.parametrize("ops, loss", [(["log_softmax"], "nll"), (["halves", "softmax"], "nll"), ([], "fused_nll")])
def test_the_head_records_the_same_ops_for_any_length(ops, loss):
    rng = np.random.default_rng(0)
    cell = Headed(3, 4, 6, ops, loss, rng)
    counts = []
    for T in (3, 12):
        xs, ys = rng.standard_normal((T, 2, 3)), rng.integers(0, 6, (T, 2))
        counts.append(recorded_ops(rnn.run(cell, xs, targets=ys, backend="numba")))
    assert counts[0] == counts[1]


def test_a_head_op_without_a_rule_over_time_runs_step_by_step_with_the_same_numbers():
    class Picked(Headed):
        def output(self, h):   # onehot of the largest entry times o: argmax_onehot has no rule over time
            o = h @ self.V.T + self.c
            return o * (1.0 + mg.argmax_onehot(o))

    rng = np.random.default_rng(3)
    cell = Picked(3, 4, 5, [], "nll", rng)
    xs, ys = rng.standard_normal((4, 2, 3)), rng.integers(0, 5, (4, 2))
    got = run_both(cell, xs, ys, None, "sum")
    for g, n in zip(got["graph"][1], got["numba"][1]):
        np.testing.assert_allclose(n, g, rtol=1e-10, atol=1e-12)
    from rnn.kernels.binding import prepare
    from rnn.rolled import Targets
    heads = prepare(cell, 2, Targets((2,), "int64")).heads
    assert "argmax_onehot" in heads.why_not_output
    assert recorded_ops(got["numba"][0]) > 4 * 3   # per step, as before


def test_the_unfolded_graph_of_a_kernel_run_still_shows_every_loss():
    rng = np.random.default_rng(1)
    cell = Headed(3, 4, 5, ["log_softmax"], "nll", rng)
    xs, ys = rng.standard_normal((4, 2, 3)), rng.integers(0, 5, (4, 2))
    r = rnn.run(cell, xs, targets=ys, loss_steps=[1, 3], backend="numba")
    g = r.graph
    assert sorted(g.losses) == [1, 3]
    for t, i in ((1, 0), (3, 1)):
        assert g.tensors[g.losses[t]].item() == pytest.approx(r.losses.data[i], abs=0)


def test_a_part_the_same_at_every_step_keeps_its_gradient_when_the_head_runs_over_time():
    """o(t) = [h(t), p] with p a parameter broadcast over the batch: concatenated with stacked values,
    p's part is repeated along time — recorded, so its gradient is the sum over the steps, not lost."""
    class Tagged(rnn.Cell):
        def __init__(self):
            super().__init__(3, 4)
            rng = np.random.default_rng(0)
            self.W, self.p = Parameter(rng.normal(0, 0.4, (4, 7))), Parameter(rng.normal(0, 1, (1, 2)))

        def step(self, x, h):
            return (mg.concatenate([x, h], axis=-1) @ self.W.T).tanh()

        def output(self, h):
            return mg.concatenate([h, mg.broadcast_to(self.p, (h.shape[0], 2))], axis=-1)

    cell, xs = Tagged(), np.random.default_rng(1).standard_normal((4, 2, 3))
    grads = []
    for backend in ("graph", "numba"):
        cell.zero_grad()
        r = rnn.run(cell, xs, backend=backend)
        (r.outputs * r.outputs).sum().backward()
        grads.append([cell.p.grad, cell.W.grad])
    assert np.abs(grads[0][0]).min() > 0
    for want, got in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
