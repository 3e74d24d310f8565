"""Gradients of gradients: a recorded backward (create_graph=True), mg.grad, gradgradcheck, hvp, and
the information-flow regulariser Ω built on them.

Every primitive's second derivatives are checked by gradgradcheck on hypothesis-drawn inputs; Ω of a
tanh Elman net against its hand-derived form, (∇_{h(t)}L) diag(1 − h(t)²) W, in NumPy; Hessian-vector
products of a small MLP against a finite-difference Hessian.  A backward that cannot be recorded (the
fused kernel's) must be refused, never give first-order numbers.
"""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.op
import rnn
from minigrad import ops
from minigrad.tensor import Tensor, record
from minigrad.testing import arrays, axes, broadcastable_shapes, shapes, tensors

from mlp_helpers import MLP, X, Y

small = dict(max_dims=2, max_side=3)


def _t(a):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _one(strategy, fn):
    return strategy.map(lambda t: ([t], fn))


def _pair(shape_pair, fn, **kw):
    return shape_pair.flatmap(lambda ab: st.tuples(tensors(ab[0], **kw), tensors(ab[1], **kw))).map(
        lambda ab: (list(ab), fn))


def _mod_args(shape):
    # a = b (k + f), f in [0.1, 0.9]: floor(a / b) = k, a tenth of b from a jump
    return st.tuples(arrays(shape, low=0.5, high=2.0), arrays(shape, low=0.1, high=0.9),
                     hnp.arrays(np.int64, shape, elements=st.integers(-2, 2))).map(
        lambda bfk: ([_t(bfk[0] * (bfk[2] + bfk[1])), _t(bfk[0])], ops.mod))


def _reshape(t):
    return st.sampled_from([(t.size,), t.shape[::-1], (1, *t.shape)]).map(
        lambda s: ([t], lambda a: ops.reshape(a, shape=s)))


def _getitem(t):
    # repeated rows (np.add.at in the adjoint, scatter) or a basic slice (plain assignment)
    rows = hnp.arrays(np.int64, st.integers(1, 4), elements=st.integers(0, t.shape[0] - 1))
    index = st.one_of(rows, st.just(slice(None, None, -1)), st.just(slice(0, 1)))
    return index.map(lambda i: ([t], lambda a: ops.getitem(a, index=i)))


def _scatter(shape):
    n = shape[0]
    index = hnp.arrays(np.int64, n, elements=st.integers(0, 3))
    return st.tuples(tensors(shape), index).map(
        lambda ti: ([ti[0]], lambda g: ops.scatter(g, index=ti[1], shape=(4, *shape[1:]))))


def _pick(nc):
    n, c = nc
    return st.tuples(tensors((n, c)), hnp.arrays(np.int64, n, elements=st.integers(0, c - 1))).map(
        lambda ti: ([ti[0]], lambda a: ops.pick(a, Tensor(ti[1]))))


def _class_scores(shape):
    return st.tuples(tensors(shape), hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1))).map(
        lambda ti: ([ti[0]], lambda a: ops.softmax_cross_entropy(a, Tensor(ti[1]))))


def _linear_read_out(nhk):
    n, h, k = nhk
    return st.tuples(tensors((n, h)), tensors((k, h)), tensors((k,)),
                     hnp.arrays(np.int64, n, elements=st.integers(0, k - 1))).map(
        lambda t: (list(t[:3]), lambda x, w, b: ops.linear_cross_entropy(x, w, b, Tensor(t[3]))))


def _concatenate(shape_axis):
    shape, axis = shape_axis
    sizes = st.lists(st.integers(1, 3), min_size=2, max_size=3)
    return sizes.flatmap(lambda ns: st.tuples(*[tensors(shape[:axis] + (n,) + shape[axis + 1:]) for n in ns])).map(
        lambda ts: (list(ts), lambda *xs: ops.concatenate(list(xs), axis=axis)))


MATMUL_SHAPES = {"2d@2d": lambda m, k, n: ((m, k), (k, n)), "1d@2d": lambda m, k, n: ((k,), (k, n)),
                 "2d@1d": lambda m, k, n: ((m, k), (k,)), "1d@1d": lambda m, k, n: ((k,), (k,)),
                 "3d@2d": lambda m, k, n: ((2, m, k), (k, n))}


def _matmul(case):
    kind, (m, k, n) = case
    a, b = MATMUL_SHAPES[kind](m, k, n)
    return _pair(st.just((a, b)), ops.matmul)


def _masked(prim, offsets):
    # a mask that ±eps on `a` cannot flip: prim(a, a + offset), offsets of 0 or ±0.7
    return lambda shape: st.tuples(tensors(shape), hnp.arrays(np.float64, shape, elements=st.sampled_from(offsets))
                                   ).map(lambda to: ([to[0]], lambda a: a * prim(a, a + to[1])))


# primitive -> a strategy of (inputs, f): f applies the primitive, on inputs away from its kinks.
CASES = {
    "add": _pair(broadcastable_shapes(**small), ops.add),
    "mul": _pair(broadcastable_shapes(**small), ops.mul),
    "neg": _one(tensors(shapes(**small)), ops.neg),
    "power": st.tuples(tensors(shapes(**small), low=0.2, high=1.5), st.sampled_from([-1.0, 0.5, 2.0, 3.0])).map(
        lambda te: ([te[0]], lambda a: ops.power(a, exponent=te[1]))),
    "pow": _pair(broadcastable_shapes(**small), ops.pow, low=0.3, high=2.0),
    "mod": shapes(**small).flatmap(_mod_args),
    "exp": _one(tensors(shapes(**small)), ops.exp),
    "log": _one(tensors(shapes(**small), low=0.2, high=3.0), ops.log),
    "tanh": _one(tensors(shapes(**small)), ops.tanh),
    "sigmoid": _one(tensors(shapes(**small)), ops.sigmoid),
    "relu": _one(tensors(shapes(**small), away_from=(0.0,)), lambda a: ops.relu(a) * a),
    "equal": shapes(**small).flatmap(_masked(ops.equal, [0.0, 0.7])),
    "less": shapes(**small).flatmap(_masked(ops.less, [-0.7, 0.7])),
    # logsumexp cuts its shift with stop_gradient and the gradient of the shift cancels exactly
    "stop_gradient": _one(tensors(shapes(min_dims=1, **small)), lambda a: mg.logsumexp(a, axis=-1)),
    "onehot": shapes(min_dims=1, max_dims=1, max_side=3).flatmap(lambda s: tensors((*s, 3))).map(
        lambda t: ([t], lambda a: a * mg.onehot(Tensor(np.arange(a.shape[0]) % 3), 3))),
    "argmax_onehot": _one(tensors(shapes(min_dims=1, **small), unique=True), lambda a: a * ops.argmax_onehot(a)),
    "sample_onehot": _one(tensors(shapes(min_dims=1, **small)), lambda a: a * mg.sample_onehot(a, seed=3)),
    "sum": tensors(shapes(**small)).flatmap(lambda t: st.tuples(axes(t.ndim), st.booleans()).map(
        lambda ak: ([t], lambda a: ops.sum(a, axis=ak[0], keepdims=ak[1])))),
    "max": tensors(shapes(**small), unique=True).flatmap(lambda t: st.tuples(axes(t.ndim), st.booleans()).map(
        lambda ak: ([t], lambda a: ops.max(a, axis=ak[0], keepdims=ak[1])))),
    "broadcast_to": broadcastable_shapes(**small).flatmap(lambda ab: tensors(ab[0]).map(
        lambda t: ([t], lambda a: ops.broadcast_to(a, shape=np.broadcast_shapes(*ab))))),
    "reshape": tensors(shapes(**small)).flatmap(_reshape),
    "transpose": tensors(shapes(**small)).flatmap(lambda t: st.permutations(range(t.ndim)).map(
        lambda p: ([t], lambda a: ops.transpose(a, axes=tuple(p))))),
    "getitem": tensors(shapes(min_dims=1, **small)).flatmap(_getitem),
    "scatter": shapes(min_dims=1, **small).flatmap(_scatter),
    "pick": st.tuples(st.integers(1, 3), st.integers(1, 3)).flatmap(_pick),
    "softmax_cross_entropy": shapes(min_dims=1, **small).flatmap(_class_scores),
    "linear_cross_entropy": st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).flatmap(_linear_read_out),
    "concatenate": shapes(min_dims=1, **small).flatmap(
        lambda s: st.integers(0, len(s) - 1).map(lambda ax: (s, ax))).flatmap(_concatenate),
    "astype": _one(tensors(shapes(**small)), lambda a: ops.astype(a, dtype="float64")),
    "matmul": st.tuples(st.sampled_from(sorted(MATMUL_SHAPES)), st.tuples(*[st.integers(1, 3)] * 3)).flatmap(_matmul),
}


def test_every_primitive_of_the_engine_has_a_second_order_case():
    engine = {n for n, p in mg.PRIMITIVES.items() if p.forward.__module__ == "minigrad.primitives"}
    assert engine == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=12)
@given(data=st.data())
def test_second_derivatives_of_every_primitive(name, data):
    inputs, f = data.draw(CASES[name])
    # squared, so the second derivative runs through the op's forward and its recorded vjp alike
    assert mg.gradgradcheck(lambda *xs: f(*xs) * f(*xs), inputs)


# --- gradgradcheck itself ------------------------------------------------------------------------

@mg.primitive("test_second_order__square_first_order_only")
def _square_first_order_only(a):
    return a * a


@_square_first_order_only.vjp
def _(g, out, a):
    return (g * 2 * ops.stop_gradient(a),)      # right values, but a recorded backward sees a constant


@mg.primitive("test_second_order__square_reads_g")
def _square_reads_g(a):
    return a * a


@_square_reads_g.vjp
def _(g, out, a):
    return (ops.stop_gradient(g) * 2 * a,)      # right values, but d/dv of it is lost


def test_gradgradcheck_catches_a_vjp_whose_backward_is_not_recorded():
    x = _t([0.5, -1.2, 0.3])
    assert mg.gradcheck(_square_first_order_only, [x])                # first order is right
    with pytest.raises(mg.GradcheckError, match=r"gradgradcheck: input 0 of shape \(3,\), element \(0,\): "
                                                r".*analytic 0\.0, numerical"):
        mg.gradgradcheck(_square_first_order_only, [x])
    with pytest.raises(mg.GradcheckError, match=r"grad_outputs\[0\] .* of shape \(3,\)"):
        mg.gradgradcheck(_square_reads_g, [x])
    assert mg.gradgradcheck(lambda a: a * a, [x])


def test_gradgradcheck_result_and_errors():
    res = mg.gradgradcheck(lambda a, b: (a * b).tanh(), [_t([0.1, 0.2]), _t([0.3, -0.4])],
                           raise_exception=True)
    assert res.ok and res.checked == 6        # two inputs of 2 and v of 2
    bad = mg.gradgradcheck(_square_first_order_only, [_t([0.5, 2.0])], raise_exception=False)
    assert not bad and [f[:2] for f in bad.failures] == [(0, (0,)), (0, (1,))]
    with pytest.raises(ValueError, match="no input requires grad"):
        mg.gradgradcheck(lambda a: a * a, [Tensor([1.0])])


# --- mg.grad and backward(create_graph=True) ------------------------------------------------------

def test_grad_returns_tensors_and_leaves_dot_grad_alone():
    x, w = _t([0.5, -1.0, 2.0]), _t([1.5, 0.5, -0.5])
    y = ((x * w).tanh() * x).sum()
    gx = mg.grad(y, x)
    gx2, gw = mg.grad(y, [x, w])
    t = np.tanh(x.data * w.data)
    assert isinstance(gx, Tensor) and not gx.requires_grad
    np.testing.assert_allclose(gx.data, t + x.data * w.data * (1 - t ** 2), rtol=1e-12)
    np.testing.assert_allclose(gw.data, x.data ** 2 * (1 - t ** 2), rtol=1e-12)
    np.testing.assert_array_equal(gx.data, gx2.data)
    assert x.grad is None and w.grad is None
    unused = _t([1.0])
    assert mg.grad(y, unused).data.tolist() == [0.0]     # not reached: zeros


def test_grad_of_intermediate_values_equals_retained_grads():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    res = rnn.run(cell, np.random.default_rng(1).normal(size=(4, 2, 2)), backend="graph")
    loss = (res.outputs ** 2).sum()
    states = [s[0] for s in res.states]
    got = mg.grad(loss, states)
    loss.backward()
    for g, s in zip(got, states):
        np.testing.assert_allclose(g.data, s.grad, rtol=1e-12)


def test_grad_by_a_state_walks_one_step_not_the_whole_run(monkeypatch):
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    res = rnn.run(cell, np.random.default_rng(1).normal(size=(12, 2, 2)), backend="graph")
    states = [s[0] for s in res.states]
    walked = []
    engine = importlib.import_module("minigrad.tensor")    # mg.tensor is the function that makes one
    real = engine.toposort
    monkeypatch.setattr(engine, "toposort", lambda roots, parents: walked.append(real(roots, parents))
                        or walked[-1])
    v = np.ones(states[0].shape)
    early, late = (mg.grad(states[t], states[t - 1], grad_outputs=v) for t in (1, 11))
    assert len(walked[0]) == len(walked[1]) < 20          # the same few nodes at step 2 and at step 12
    # and they are the whole of it: diag(1 − h(t)²) W, by hand
    for t, g in ((1, early), (11, late)):
        want = (v * (1 - states[t].data ** 2)) @ cell.weight_hh.data
        np.testing.assert_allclose(g.data, want, rtol=1e-12)
    # with a leaf among the inputs nothing is cut: W's gradient gathers every step before
    gw, gh = mg.grad(states[11], [cell.weight_hh, states[10]], grad_outputs=v)
    assert len(walked[2]) > 10 * len(walked[0])
    np.testing.assert_allclose(gh.data, late.data, rtol=1e-12)
    np.testing.assert_allclose(gw.data, mg.grad((states[11] * v).sum(), cell.weight_hh).data, rtol=1e-12)


def test_an_optimizer_step_and_a_clip_read_recorded_gradients_values():
    x, y = _t([0.5, -1.0, 2.0]), _t([1.0, 2.0, 3.0])
    (x ** 3).sum().backward(create_graph=True)
    assert isinstance(x.grad, Tensor) and x.grad.requires_grad
    assert mg.grad_norm([x]) == pytest.approx(np.linalg.norm(3 * x.data ** 2))
    mg.optim.SGD([x], lr=0.1).step()
    np.testing.assert_allclose(x.data, [0.5, -1.0, 2.0] - 0.1 * 3 * np.array([0.25, 1.0, 4.0]))
    (y ** 3).sum().backward(create_graph=True)
    mg.clip_grad_value_([y], 5.0)
    np.testing.assert_allclose(y.grad, [3.0, 5.0, 5.0])
    y.grad = None
    (y ** 3).sum().backward(create_graph=True)
    total = mg.clip_grad_norm_([y], 1.0)
    assert total == pytest.approx(np.linalg.norm([3.0, 12.0, 27.0]))
    np.testing.assert_allclose(np.linalg.norm(y.grad), 1.0, rtol=1e-5)


def test_grad_refuses_what_has_no_gradient():
    x = _t([1.0, 2.0])
    with pytest.raises(TypeError, match=r"grad: inputs\[0\] is a tensor of shape \(2,\) that does not require"):
        mg.grad((x * x).sum(), Tensor([1.0, 2.0]))
    with mg.no_grad():
        y = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"grad: outputs\[0\] does not require grad"):
        mg.grad(y, x)
    with pytest.raises(RuntimeError, match=r"not a scalar; pass grad_outputs\[0\]="):
        mg.grad(x * x, x)
    with pytest.raises(mg.ShapeError, match=r"grad_outputs\[0\] has shape \(3,\), tensor has shape \(2,\)"):
        mg.grad(x * x, x, grad_outputs=np.ones(3))


def test_backward_with_create_graph_leaves_differentiable_grads():
    x = _t([0.5, -1.0, 2.0])
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    assert isinstance(g, Tensor) and g.requires_grad
    np.testing.assert_allclose(g.data, 3 * x.data ** 2)
    x.grad = None
    (g * g).sum().backward()                      # d/dx Σ (3x²)² = 36 x³
    np.testing.assert_allclose(x.grad, 36 * x.data ** 3)


def test_plain_backward_records_nothing_and_create_graph_records(monkeypatch):
    recorded = []
    real = minigrad.op.record
    monkeypatch.setattr(minigrad.op, "record", lambda out, op, *a, **k: recorded.append(op) or real(out, op, *a, **k))
    x = _t([0.5, -1.0, 2.0])
    y = ((x * x).tanh() @ x).exp()
    forward = len(recorded)
    assert forward == 4
    y.backward()
    assert len(recorded) == forward and isinstance(x.grad, np.ndarray)
    x.grad = None
    y.backward(create_graph=True)
    assert len(recorded) > forward and isinstance(x.grad, Tensor) and x.grad.op is not None
    assert {"mul", "matmul"} <= set(recorded[forward:])     # the vjps, as engine ops


def test_a_backward_that_cannot_be_recorded_is_refused_and_changes_nothing():
    x = _t([1.0, 2.0])
    doubled = record(Tensor(x._data * 2), "doubled", [x], lambda g: (2 * g,))   # a vjp on arrays only
    y = (doubled * x).sum()
    with pytest.raises(RuntimeError, match=r"backward\(create_graph=True\): doubled of shape \(2,\) computes its "
                                           r"vector-Jacobian product on arrays only.*engine ops"):
        y.backward(create_graph=True)
    assert x.grad is None
    with pytest.raises(RuntimeError, match=r"grad\(create_graph=True\): doubled"):
        mg.grad(y, x, create_graph=True)
    np.testing.assert_allclose(mg.grad(y, x).data, 4 * x.data)     # first order is fine
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


@mg.primitive("test_second_order__vjp_on_arrays")
def _vjp_on_arrays(a):
    return np.sin(a)


@_vjp_on_arrays.vjp
def _(g, out, a):
    return (np.cos(getattr(a, "_data", a)) * getattr(g, "_data", g),)   # arrays even when given tensors


def test_a_rule_that_returns_arrays_on_tensors_is_refused():
    x = _t([0.3, 0.6])
    assert mg.gradcheck(_vjp_on_arrays, [x])
    with pytest.raises(TypeError, match=r"the vjp of test_second_order__vjp_on_arrays gave a ndarray, not a "
                                        r"Tensor.*write its rule with `ops`"):
        mg.grad(_vjp_on_arrays(x).sum(), x, create_graph=True)


# --- through a recurrent run -----------------------------------------------------------------------

def test_second_derivatives_through_every_cell_on_the_graph_backend():
    rng = np.random.default_rng(0)
    for cell in (rnn.ElmanCell(2, 3, rng=rng), rnn.LSTMCell(2, 2, rng=rng), rnn.GRUCell(2, 2, rng=rng),
                 rnn.Stacked([rnn.ElmanCell(2, 2, rng=rng), rnn.GRUCell(2, 2, rng=rng)])):
        xs = Tensor(rng.normal(size=(3, 2, 2)), requires_grad=True)
        params = cell.parameters()
        assert mg.gradgradcheck(lambda xs, *p: rnn.run(cell, xs, backend="graph").outputs[-1], [xs, *params])


def test_the_fused_kernel_refuses_a_recorded_backward():
    pytest.importorskip("numba")
    cell = rnn.ElmanCell(3, 4, rng=np.random.default_rng(0))
    head = mg.nn.Linear(4, 1, rng=np.random.default_rng(1))
    res = rnn.run(cell, np.random.default_rng(2).normal(size=(5, 2, 3)), backend="numba")
    assert res.backend == "numba"
    loss = (head(res.outputs[-1]) ** 2).sum()
    advice = r"rnn_kernel \(cell=.*T=5\) of shape .* on arrays only.*rnn\.run\(\.\.\., create_graph=True\)"
    with pytest.raises(RuntimeError, match=advice):
        mg.grad(loss, cell.weight_hh, create_graph=True)
    with pytest.raises(RuntimeError, match=advice):
        loss.backward(create_graph=True)
    assert cell.weight_hh.grad is None and head.weight.grad is None       # refused before any gradient
    with pytest.raises(ValueError, match=r"flow_regularizer: this run used backend 'numba'.*create_graph=True"):
        rnn.flow_regularizer(res, loss)
    # what does not pass through the kernel can be recorded; a plain backward goes through it
    gw = mg.grad(loss, head.weight, create_graph=True)
    assert gw.requires_grad
    loss.backward()
    graph = rnn.run(cell, np.random.default_rng(2).normal(size=(5, 2, 3)), backend="graph")
    graph_loss = (head(graph.outputs[-1]) ** 2).sum()
    np.testing.assert_allclose(cell.weight_hh.grad, mg.grad(graph_loss, cell.weight_hh).data, rtol=1e-10)


def test_a_run_asked_for_create_graph_falls_back_to_the_graph_and_says_why():
    pytest.importorskip("numba")
    cell = rnn.ElmanCell(3, 4, rng=np.random.default_rng(0))
    xs = np.random.default_rng(2).normal(size=(5, 2, 3))
    assert rnn.run(cell, xs).backend == "numba"                          # the kernel runs this cell
    res = rnn.run(cell, xs, create_graph=True)
    assert res.backend == "graph" and "create_graph=True" in res.fallback and "on arrays" in res.fallback
    loss = (res.outputs[-1] ** 2).sum()
    g = mg.grad(loss, cell.weight_hh, create_graph=True)
    assert g.requires_grad and rnn.flow_regularizer(res, loss).requires_grad
    assert rnn.run(cell, xs, backend="graph", create_graph=True).fallback is None   # nothing fell back
    with pytest.raises(ValueError, match=r"run\(ElmanCell\): create_graph=True with backend=\"numba\".*"
                                         r"cannot be recorded.*backend=\"graph\""):
        rnn.run(cell, xs, backend="numba", create_graph=True)


# --- the information-flow regulariser ------------------------------------------------------------

T, B, I, H = 5, 3, 2, 4


def _elman_problem(seed=0):
    rng = np.random.default_rng(seed)
    cell = rnn.ElmanCell(I, H, rng=rng)
    for p in cell.parameters():
        p.data = rng.normal(0, 0.8, p.shape)
    return cell, rng.normal(size=(T, B, I)), rng.normal(size=(B, H))


def _loss(outputs, ys):
    """L = MSE of the last state against ys, plus a little of every state's square (a loss at every step)."""
    return mg.mse_loss(outputs[-1], ys) + 0.1 * (outputs ** 2).mean()


def _hand_omega(U, W, b, xs, ys, v=None):
    """Ω in NumPy from eq. 10.50 with ∂h(t)/∂h(t−1) = diag(1 − h(t)²) W; ∇_{h(t)}L by a hand BPTT, or v."""
    h, hs = np.zeros((B, H)), []
    for t in range(T):
        h = np.tanh(xs[t] @ U.T + h @ W.T + b)
        hs.append(h)
    if v is None:
        direct = [0.2 / (T * B * H) * hs[t] for t in range(T)]
        direct[-1] = direct[-1] + 2 / (B * H) * (hs[-1] - ys)
        v = [None] * T
        v[-1] = direct[-1]
        for t in range(T - 2, -1, -1):
            v[t] = direct[t] + (v[t + 1] * (1 - hs[t + 1] ** 2)) @ W
    omega = 0.0
    for t in range(1, T):
        u = (v[t] * (1 - hs[t] ** 2)) @ W
        omega += np.mean((np.linalg.norm(u, axis=1) / np.linalg.norm(v[t], axis=1) - 1) ** 2)
    return omega, v


def _numerical_grads(cell, xs, ys, v=None, eps=1e-6):
    """Central differences of the hand form, ∇_{h(t)}L frozen at v (or recomputed when v is None)."""
    arrays = {"weight_ih": cell.weight_ih.data.copy(), "weight_hh": cell.weight_hh.data.copy(),
              "bias": cell.bias_ih.data + cell.bias_hh.data}
    omega = lambda a: _hand_omega(a["weight_ih"], a["weight_hh"], a["bias"], xs, ys, v)[0]  # noqa: E731
    out = {}
    for name, arr in arrays.items():
        out[name] = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = dict(arrays), dict(arrays)
            plus[name], minus[name] = arr.copy(), arr.copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            out[name][idx] = (omega(plus) - omega(minus)) / (2 * eps)
    return out


def _flow_grads(cell, xs, ys, exact):
    cell.zero_grad()
    res = rnn.run(cell, xs, backend="graph")
    omega = rnn.flow_regularizer(res, _loss(res.outputs, ys), exact=exact)
    omega.backward()
    return omega.item(), {"weight_ih": cell.weight_ih.grad, "weight_hh": cell.weight_hh.grad,
                          "bias": cell.bias_ih.grad}


def test_flow_regularizer_of_a_tanh_net_matches_the_hand_derived_form():
    cell, xs, ys = _elman_problem()
    want, v = _hand_omega(cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data + cell.bias_hh.data, xs, ys)
    omega, grads = _flow_grads(cell, xs, ys, exact=False)
    assert omega == pytest.approx(want, rel=1e-12) and omega > 0.05
    numerical = _numerical_grads(cell, xs, ys, v)                       # ∇_{h(t)}L held constant
    for name, g in grads.items():
        np.testing.assert_allclose(g, numerical[name], rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(cell.bias_ih.grad, cell.bias_hh.grad, rtol=1e-12)   # b = bias_ih + bias_hh


def test_flow_regularizer_exact_also_differentiates_the_gradient():
    cell, xs, ys = _elman_problem(1)
    constant = _flow_grads(cell, xs, ys, exact=False)[1]
    omega, grads = _flow_grads(cell, xs, ys, exact=True)
    numerical = _numerical_grads(cell, xs, ys)                          # ∇_{h(t)}L recomputed each time
    for name, g in grads.items():
        np.testing.assert_allclose(g, numerical[name], rtol=1e-6, atol=1e-8, err_msg=name)
        assert not np.allclose(g, constant[name], rtol=1e-3)            # the option changes the gradient


def test_flow_regularizer_of_every_cell_is_differentiable():
    rng = np.random.default_rng(3)
    for cell in (rnn.LSTMCell(2, 2, rng=rng), rnn.GRUCell(2, 2, rng=rng),
                 rnn.Stacked([rnn.ElmanCell(2, 2, rng=rng), rnn.ElmanCell(2, 2, rng=rng)])):
        xs = rng.normal(size=(3, 2, 2))

        def omega(*params):                      # gradcheck perturbs the cell's own parameters
            with mg.enable_grad():               # and calls this under no_grad too: Ω needs the graph
                res = rnn.run(cell, xs, backend="graph")
                return rnn.flow_regularizer(res, (res.outputs ** 2).sum(), exact=True)
        assert omega().item() > 0
        assert mg.gradcheck(omega, cell.parameters())


def test_flow_regularizer_refuses_what_it_cannot_measure():
    rng = np.random.default_rng(0)
    res = rnn.run(rnn.ElmanCell(2, 3, rng=rng), rng.normal(size=(4, 2, 2)), backend="graph")
    with pytest.raises(ValueError, match="has no loss .* pass loss="):
        rnn.flow_regularizer(res)
    with pytest.raises(ValueError, match=r"loss must be a scalar, got shape \(2, 3\)"):
        rnn.flow_regularizer(res, res.outputs[-1])
    with mg.no_grad():
        quiet = rnn.run(rnn.ElmanCell(2, 3, rng=rng), rng.normal(size=(4, 2, 2)), backend="graph")
    with pytest.raises(ValueError, match=r"does not require grad, so the run of ElmanCell recorded no graph"):
        rnn.flow_regularizer(quiet, quiet.outputs.sum())
    both = rnn.Bidirectional(rnn.ElmanCell(2, 3, rng=rng), rnn.ElmanCell(2, 3, rng=rng))
    res = rnn.run(both, rng.normal(size=(4, 2, 2)), backend="graph")
    with pytest.raises(ValueError, match=r"Bidirectional carries states \{.*-1.*\} .* other than one step"):
        rnn.flow_regularizer(res, res.outputs.sum())


# --- Hessian-vector products ---------------------------------------------------------------------

def test_hvp_of_an_mlp_matches_a_finite_difference_hessian():
    model = MLP(hidden=3, seed=4)
    params = model.parameters()
    loss = lambda *ps: mg.mse_loss(model(Tensor(X)), Y)                 # noqa: E731  (reads the same tensors)
    sizes = [p.size for p in params]
    flat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays])  # noqa: E731

    def gradient():
        return flat([g.data for g in mg.grad(loss(), params)])

    eps, n = 1e-5, sum(sizes)
    hessian = np.zeros((n, n))
    for i in range(n):
        p, idx = _locate(params, sizes, i)
        orig = p.data[idx]
        p.data[idx] = orig + eps
        plus = gradient()
        p.data[idx] = orig - eps
        minus = gradient()
        p.data[idx] = orig
        hessian[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-7)
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = [rng.normal(size=p.shape) for p in params]
        hv = mg.hvp(loss, params, v)
        assert isinstance(hv, tuple) and not any(h.requires_grad for h in hv)
        np.testing.assert_allclose(flat([h.data for h in hv]), hessian @ flat(v), rtol=1e-6, atol=1e-8)
    assert all(p.grad is None for p in params)


def _locate(params, sizes, i):
    for p, n in zip(params, sizes):
        if i < n:
            return p, np.unravel_index(i, p.shape)
        i -= n


def test_hvp_of_one_tensor_and_of_a_linear_function():
    x = _t([0.5, -1.0, 2.0])
    np.testing.assert_allclose(mg.hvp(lambda x: (x ** 3).sum(), x, np.array([1.0, 2.0, 3.0])).data,
                               6 * x.data * [1.0, 2.0, 3.0])
    assert mg.hvp(lambda x: (x * 2.0).sum(), x, np.ones(3)).data.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(mg.ShapeError, match=r"hvp: v must have x's shapes \[\(3,\)\], got \[\(2,\)\]"):
        mg.hvp(lambda x: (x ** 3).sum(), x, np.ones(2))
    with pytest.raises(ValueError, match=r"hvp: f must return a scalar tensor, got shape \(3,\)"):
        mg.hvp(lambda x: x ** 3, x, np.ones(3))
    with pytest.raises(TypeError, match=r"hvp: x\[1\] is a tensor of shape \(2,\) that does not require grad"):
        mg.hvp(lambda x, y: (x * x).sum(), [x, Tensor([1.0, 2.0])], [np.ones(3), np.ones(2)])


def test_training_on_the_adding_problem_with_the_regulariser():
    from minigrad_cli.tasks import fit
    from rnn.run import CREATE_GRAPH_FALLBACK
    seen = []
    plain, _ = fit("adding", "elman", 6, hidden=4, steps=3, batch=4, backend="graph", seed=0)
    model, mse = fit("adding", "elman", 6, hidden=4, steps=3, batch=4, seed=0, flow=1.0,
                     on_step=lambda loss, res: seen.append((res.backend, res.fallback)))
    assert np.isfinite(mse) and model.skipped == 0
    assert seen == [("graph", CREATE_GRAPH_FALLBACK)] * 3          # backend "auto", and why it ran the graph
    assert not np.allclose(model.cell.weight_hh.data, plain.cell.weight_hh.data)   # Ω took part
    with pytest.raises(ValueError, match=r"fit: flow= .* needs the unfolded graph"):
        fit("adding", "elman", 6, hidden=4, steps=1, batch=4, backend="numba", flow=1.0)
