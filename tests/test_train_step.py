"""The training step compiled whole (rnn.kernels.training) computes what the engine's step computes.

The reference is the Trainer's engine step from the same weights: rnn.run on the numba backend,
mg.linear_cross_entropy, backward(), minigrad.clip and optimizer.step().  The compiled step runs the
same kernels, loops and update arithmetic in one call, so losses, weights, gradients, optimizer
buffers and the carried state agree to the last bits of a BLAS product (held here to 1e-12).
"""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minigrad as mg
import rnn
from minigrad_cli.charlm import CharModel, Trainer
from rnn.kernels.ir import UnsupportedCellError
from rnn.kernels.training import TrainStep
from rnn_helpers import LeakyCell

pytest.importorskip("numba")

V, H = 17, 6  # few shapes: each cell and optimizer compiles once
OPTIMIZERS = {
    "sgd": lambda ps: mg.optim.SGD(ps, lr=0.3),
    "momentum": lambda ps: mg.optim.SGD(ps, lr=0.3, momentum=0.9),
    "adagrad": lambda ps: mg.optim.Adagrad(ps, lr=0.1),
    "adam": lambda ps: mg.optim.Adam(ps, lr=0.01),
}


def twins(cell, optimizer, clip, T, B, seed, embed=0):
    """(compiled, engine): two trainers on one text from the same weights."""
    ids = np.random.default_rng(seed).integers(0, V, 3 * B * (T + 1) + 1)
    out = []
    for whole in (True, False):
        model = CharModel(V, cell, H, embed, seed=seed)
        out.append(Trainer(model, OPTIMIZERS[optimizer](model.parameters()), ids, T, B, clip, "numba",
                           whole_step=whole))
    return out


def assert_same(a, b, rtol=1e-12):
    np.testing.assert_allclose(a.losses, b.losses, rtol=rtol, atol=0)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.data, q.data, rtol=rtol, atol=1e-15)
        np.testing.assert_allclose(p.grad, q.grad, rtol=rtol, atol=1e-15)
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_allclose(sa[k], sb[k], rtol=rtol, atol=1e-15, err_msg=k)
    for s, r in zip(a.state, b.state):
        np.testing.assert_allclose(s.data, r.data, rtol=rtol, atol=1e-15)
    assert a.skipped == b.skipped and a.step == b.step


# every cell and every optimizer, in pairs (the update's code does not depend on the cell: each pair
# compiles a step of its own, seconds on an empty cache)
@pytest.mark.parametrize("cell, optimizer", [("elman", "sgd"), ("elman", "adam"), ("lstm", "momentum"),
                                             ("lstm", "adagrad"), ("gru", "adam")])
@settings(max_examples=6)
@given(clip=st.sampled_from([None, ("norm", 0.3), ("value", 0.01)]), T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_the_compiled_step_is_the_engine_step(cell, optimizer, clip, T, seed):
    compiled, engine = twins(cell, optimizer, clip, T, 2, seed)  # one batch size: each compiles anew
    for _ in range(5):  # past the end of the text: the state carries, then starts over
        compiled.train_step(), engine.train_step()
    assert compiled.backend_used == "numba, whole step" and engine.backend_used == "numba"
    assert_same(compiled, engine)


@pytest.mark.parametrize("cell", ["gru"])  # its hoisted product's gradient is an array of its own (LSTM's, Elman's
@settings(max_examples=4)                  # is the recurrent one's): the custom cells below cover that case
@given(clip=st.sampled_from([None, ("norm", 0.3)]), T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_with_an_embedding_the_compiled_step_is_the_engine_step(cell, clip, T, seed):
    """x(t) = E[ids]: the hoisted product a GEMM, the embedding's gradient the rows added back."""
    compiled, engine = twins(cell, "adam", clip, T, 2, seed, embed=5)
    for _ in range(5):
        compiled.train_step(), engine.train_step()
    assert compiled.backend_used == "numba, whole step"
    assert_same(compiled, engine)


def test_a_non_finite_gradient_skips_the_update_as_the_engine_does():
    compiled, engine = twins("lstm", "momentum", ("norm", 1.0), 4, 2, 0)
    for t in (compiled, engine):
        t.train_step()
        t.model.cell.weight_hh.data[0, 0] = np.nan
    before = [p.data.copy() for p in compiled.params]
    compiled.train_step(), engine.train_step()
    assert compiled.skipped == engine.skipped == 1
    assert list(compiled.opt.steps) == [1] * len(compiled.params)  # no step counted
    for p, q in zip(before, compiled.params):
        np.testing.assert_array_equal(p, q.data)  # untouched (NaN where it was)


def test_gradients_too_small_for_the_plain_norm_are_clipped_and_applied_as_the_engine_does():
    compiled, engine = twins("elman", "adam", ("norm", 1.0), 3, 2, 0)
    for t in (compiled, engine):  # the targets' class all but certain: gradients ~ e^-700, squares underflow
        t.data[:] = 4
        t.model.head.bias.data[4] = 700.0
    compiled.train_step(), engine.train_step()
    squares = sum(float(np.dot(p.grad.ravel(), p.grad.ravel())) for p in compiled.params)
    assert squares < 2.0 ** -900 and any(np.any(p.grad != 0) for p in compiled.params)
    assert compiled.backend_used == "numba, whole step"
    assert_same(compiled, engine)


def test_a_class_index_out_of_range_is_refused_and_changes_nothing():
    model = CharModel(V, "elman", H, 0, seed=0)
    opt = mg.optim.SGD(model.parameters(), lr=0.1)
    step = TrainStep(model.cell, model.head.weight, model.head.bias, opt, ("norm", 1.0))
    before = [p.data.copy() for p in model.parameters()]
    ids = np.zeros((3, 2), np.int64)
    targets = ids.copy()
    targets[2, 1] = V
    with pytest.raises(ValueError, match=rf"class indices must lie in \[0, {V}\).*targets in \[0, {V}\]"):
        step(ids, targets)
    with pytest.raises(TypeError, match=r"integer arrays of one shape \(T, B\).*\(3, 2\) and float64 \(3, 2\)"):
        step(ids, targets.astype(float))
    for p, q in zip(before, model.parameters()):
        np.testing.assert_array_equal(p, q.data)
    assert list(opt.steps) == [0] * len(before)


class DeepTransition(rnn.Cell):
    """A cell written outside the package (Fig. 10.13b): h(t) = tanh(W2 z + b2), z = tanh(W1 h(t−1) + U x(t) + b1)
    — a product whose left operand the step computes, a stored value, two biases."""

    def __init__(self, input_size, hidden_size, rng):
        super().__init__(input_size, hidden_size)
        self.U, self.W1, self.W2, self.b1, self.b2 = self._init(
            rng, (hidden_size, input_size), (hidden_size, hidden_size), (hidden_size, hidden_size),
            (hidden_size,), (hidden_size,))

    def step(self, x, h):
        z = (x @ self.U.T + h @ self.W1.T + self.b1).tanh()
        return (z @ self.W2.T + self.b2).tanh()


def custom_twins(make_cell, optimizer, embed, steps=4):
    """(compiled, engine) trainers of a char model whose cell is make_cell(input width), after `steps` steps."""
    trainers = []
    for whole in (True, False):
        model = CharModel(V, "elman", H, embed, seed=0)
        model.cell = make_cell(embed or V)
        trainers.append(Trainer(model, optimizer(model.parameters()), np.arange(90) % V, 5, 2, ("norm", 0.5),
                                "numba", whole_step=whole))
    for _ in range(steps):
        trainers[0].train_step(), trainers[1].train_step()
    return trainers


@pytest.mark.parametrize("embed", [4])
def test_a_custom_cell_compiles_whole_and_is_the_engine_step(embed):
    compiled, engine = custom_twins(lambda I: DeepTransition(I, H, np.random.default_rng(1)),
                                    lambda ps: mg.optim.Adam(ps, lr=0.01), embed)
    assert compiled.backend_used == "numba, whole step", compiled.why_not_compiled
    assert_same(compiled, engine)


class SlicedWeights(rnn.Cell):
    """One stacked weight sliced per use (values computed from parameters alone, the kernels' right operands)
    and a gain through a softplus: the engine computes them each call, their gradients go back through it."""

    def __init__(self, input_size, hidden_size, rng):
        super().__init__(input_size, hidden_size)
        self.W, self.b, self.gain = self._init(rng, (hidden_size, input_size + hidden_size), (hidden_size,),
                                               (hidden_size,))

    def step(self, x, h):
        I = self.input_size
        gain = (self.gain.exp() + 1.0).log()
        return (gain * (x @ self.W[:, :I].T + h @ self.W[:, I:].T + self.b)).tanh()


@pytest.mark.parametrize("make, embed", [(lambda I: LeakyCell(I, H, rng=np.random.default_rng(1)), 0),
                                         (lambda I: SlicedWeights(I, H, np.random.default_rng(1)), 4)],
                         ids=["leaky", "sliced-embedded"])
def test_values_computed_from_parameters_alone_go_through_the_engine_and_the_step_is_still_compiled(make, embed):
    compiled, engine = custom_twins(make, lambda ps: mg.optim.Adagrad(ps, lr=0.1), embed)
    assert compiled.backend_used == "numba, whole step", compiled.why_not_compiled
    assert_same(compiled, engine)


class TanhOut(rnn.ElmanCell):
    def output(self, state):
        return mg.tanh(state)


@pytest.mark.parametrize("why, make", [
    ("neither the step's nor the read-out's", lambda: _extra_parameter()),
    ("output o(t) is not its state", lambda: _with_cell(TanhOut(V, H, rng=np.random.default_rng(0)))),
    ("frozen", lambda: _frozen()),
])
def test_what_it_cannot_compile_runs_the_engine_step_and_says_why(why, make):
    trainer = make()
    loss = trainer.train_step()
    assert np.isfinite(loss) and trainer.backend_used == "numba"
    assert why in trainer.why_not_compiled


def _with_cell(cell):
    model = CharModel(V, "elman", H, 0, seed=0)
    model.cell = cell
    return Trainer(model, mg.optim.SGD(model.parameters(), lr=0.1), np.arange(40) % V, 4, 1)


def _extra_parameter():
    model = CharModel(V, "gru", H, 0, seed=0)
    return Trainer(model, mg.optim.Adam(model.parameters() + [mg.nn.Parameter(np.zeros(3))]), np.arange(40) % V, 4, 1)


def _frozen():
    model = CharModel(V, "elman", H, 0, seed=0)
    model.cell.bias_hh.requires_grad = False
    return Trainer(model, mg.optim.SGD(model.parameters(), lr=0.1), np.arange(40) % V, 4, 1)


def test_a_parameter_array_replaced_by_a_view_sends_the_trainer_to_the_engine_step():
    compiled, engine = twins("gru", "adam", ("norm", 1.0), 4, 2, 5)
    compiled.train_step(), engine.train_step()
    for t in (compiled, engine):
        t.model.head.weight.data = np.asfortranarray(t.model.head.weight.data)
    compiled.train_step(), engine.train_step()
    assert "weight" in compiled.why_not_compiled and compiled.backend_used == "numba"
    assert_same(compiled, engine)


def test_the_generated_step_in_python_is_the_compiled_one():
    """Once through train_step.py_func: the generated source run by Python (the kernels and loops it calls
    compiled) against the compiled train_step."""
    model = CharModel(V, "lstm", H, 0, seed=2)
    opt = mg.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    step = TrainStep(model.cell, model.head.weight, model.head.bias, opt, ("norm", 0.5))
    ids = np.random.default_rng(2).integers(0, V, (4, 2))
    step(ids, ids)
    built = step._built[(4, 2)]
    seen = {}
    fn = built.step_fn
    built.step_fn = lambda *args: seen.setdefault("args", copy.deepcopy(args)) and fn(*args)
    step(ids, ids[::-1])
    args = copy.deepcopy(seen["args"])
    got, want = fn.py_func(*args), fn(*seen["args"])
    assert got[2] == want[2] == 0
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-13)
    for a, b in zip(args, seen["args"]):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_a_step_that_fails_to_compile_leaves_the_engine_step(monkeypatch):
    def broken(self, ids, targets, state=None):
        raise RuntimeError("numba: the cache index is damaged")
    monkeypatch.setattr(TrainStep, "__call__", broken)
    compiled, engine = twins("elman", "sgd", ("norm", 1.0), 3, 2, 0)
    for _ in range(3):
        compiled.train_step(), engine.train_step()
    assert "RuntimeError: numba: the cache index is damaged" in compiled.why_not_compiled
    assert compiled.backend_used == "numba"
    assert_same(compiled, engine)


def test_a_cell_parameter_replaced_after_the_step_was_made_sends_the_trainer_to_the_engine_step():
    compiled, engine = twins("lstm", "momentum", None, 3, 2, 4)
    compiled.train_step(), engine.train_step()
    for t in (compiled, engine):
        t.model.cell.bias_hh = mg.nn.Parameter(t.model.cell.bias_hh.data + 1.0)  # not the optimizer's any more
    compiled.train_step(), engine.train_step()
    assert "parameters were replaced" in compiled.why_not_compiled and compiled.backend_used == "numba"
    np.testing.assert_allclose(compiled.losses, engine.losses, rtol=1e-12)
