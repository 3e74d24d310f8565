import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minigrad as mg
from minigrad import nn, optim

LR = 0.1


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal((3, 2)).astype(dtype)),
            nn.Parameter(rng.standard_normal(4).astype(dtype))]


def grads_for(params, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def run(opt, params, grad_seeds):
    for s in grad_seeds:
        for p, g in zip(params, grads_for(params, s)):
            p.grad = g
        opt.step()


# --- reference updates, written from the published equations ------------------------
def ref_sgd(p, gs, lr, mu):
    b = None
    for g in gs:
        b = g if b is None or mu == 0 else mu * b + g
        p = p - lr * b
    return p


def ref_adagrad(p, gs, lr, eps):
    s = np.zeros_like(p)
    for g in gs:
        s = s + g ** 2
        p = p - lr * g / (np.sqrt(s) + eps)
    return p


def ref_adam(p, gs, lr, b1, b2, eps):
    # Kingma & Ba 2015, Algorithm 1
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=LR), lambda p, gs: ref_sgd(p, gs, LR, 0.0)),
    "sgd-momentum": (lambda ps: optim.SGD(ps, lr=LR, momentum=0.9), lambda p, gs: ref_sgd(p, gs, LR, 0.9)),
    "adagrad": (lambda ps: optim.Adagrad(ps, lr=LR), lambda p, gs: ref_adagrad(p, gs, LR, 1e-8)),
    "adam": (lambda ps: optim.Adam(ps, lr=LR, betas=(0.8, 0.95), eps=1e-6),
             lambda p, gs: ref_adam(p, gs, LR, 0.8, 0.95, 1e-6)),
}


@pytest.fixture(params=list(CASES))
def case(request):
    return CASES[request.param]


def test_two_steps_match_the_published_equations(case):
    make_opt, ref = case
    params = make_params()
    start = [p.data.copy() for p in params]
    run(make_opt(params), params, [1, 2])
    for i, p in enumerate(params):
        gs = [grads_for(params, s)[i] for s in (1, 2)]
        np.testing.assert_allclose(p.data, ref(start[i], gs), rtol=1e-12, atol=1e-14)
        assert not np.allclose(p.data, start[i])


def test_update_is_in_place_and_keeps_float32(case):
    make_opt, ref = case
    params = make_params(np.float32)
    arrays = [p.data for p in params]
    start = [p.data.astype(np.float64) for p in params]
    run(make_opt(params), params, [1, 2])
    for i, p in enumerate(params):
        assert p.data is arrays[i]
        assert p.dtype == np.float32
        gs = [grads_for(params, s)[i].astype(np.float64) for s in (1, 2)]
        np.testing.assert_allclose(p.data, ref(start[i], gs), rtol=1e-4, atol=1e-5)
    assert all(arr.dtype == np.float32 for k, arr in make_opt(params).state_dict().items() if "." in k)


def test_parameters_without_grad_are_skipped_and_their_state_does_not_advance(case):
    make_opt, ref = case
    params = make_params()
    opt = make_opt(params)
    b0 = params[1].data.copy()
    params[0].grad = grads_for(params, 1)[0]     # params[1].grad stays None
    opt.step()
    np.testing.assert_array_equal(params[1].data, b0)
    assert opt.state_dict()["step"].tolist() == [1, 0]
    g2 = grads_for(params, 2)
    params[0].grad, params[1].grad = g2
    opt.step()
    # params[1] has seen one gradient, so it must look like a first step (Adam's bias correction with t=1).
    np.testing.assert_allclose(params[1].data, ref(b0, [g2[1]]), rtol=1e-12)


def test_zero_grad_clears_every_grad(case):
    params = make_params()
    opt = case[0](params)
    for p, g in zip(params, grads_for(params, 0)):
        p.grad = g
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_state_dict_round_trip_continues_bit_exactly(case):
    make_opt, _ = case
    a_params, b_params = make_params(), make_params(seed=5)
    a = make_opt(a_params)
    run(a, a_params, [1, 2])
    b = make_opt(b_params)
    for pb, pa in zip(b_params, a_params):
        pb.data = pa.data.copy()
    b.load_state_dict(a.state_dict())
    run(a, a_params, [3, 4])
    run(b, b_params, [3, 4])
    for pa, pb in zip(a_params, b_params):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_state_dict_is_a_copy(case):
    params = make_params()
    opt = case[0](params)
    run(opt, params, [1])
    state = opt.state_dict()
    for arr in state.values():
        arr[...] = 0
    assert opt.state_dict()["step"].tolist() == [1, 1]


def test_state_dict_holds_only_plain_numeric_arrays(case):
    params = make_params()
    state = case[0](params).state_dict()
    assert state and all(isinstance(v, np.ndarray) and v.dtype.kind in "iuf" for v in state.values())


def _corruptions(state):
    buf = next(k for k in state if "." in k) if any("." in k for k in state) else None
    out = {
        "missing key": ({k: v for k, v in state.items() if k != "step"}, "missing: step"),
        "unexpected key": ({**state, "bogus": np.zeros(1)}, "unexpected: bogus"),
        "wrong step dtype": ({**state, "step": state["step"].astype(np.float64)}, "step: dtype float64"),
        "wrong step shape": ({**state, "step": np.zeros(3, np.int64)}, "step: shape (3,)"),
        "bad hyperparameter": ({**state, "lr": np.array(-1.0)}, "lr must be >= 0"),
    }
    if buf is not None:
        out["wrong buffer shape"] = ({**state, buf: np.zeros((7,))}, f"{buf}")
        out["wrong buffer dtype"] = ({**state, buf: state[buf].astype(np.float32)}, "dtype float32")
    return out


@pytest.mark.parametrize("name", ["sgd-momentum", "adagrad", "adam"])
def test_load_state_dict_refusals_change_nothing(name):
    make_opt, _ = CASES[name]
    params = make_params()
    opt = make_opt(params)
    run(opt, params, [1])
    before = opt.state_dict()
    for what, (bad, expected_text) in _corruptions(before).items():
        with pytest.raises(ValueError) as info:
            opt.load_state_dict(bad)
        assert expected_text in str(info.value), what
        after = opt.state_dict()
        assert after.keys() == before.keys()
        for k in before:
            np.testing.assert_array_equal(after[k], before[k])
        assert opt.lr == LR


def test_loading_another_optimizers_state_is_refused():
    params = make_params()
    adam = optim.Adam(params)
    with pytest.raises(ValueError, match=r"missing: momentum.*unexpected: beta1"):
        optim.SGD(params, lr=LR, momentum=0.9).load_state_dict(adam.state_dict())


def test_load_state_dict_restores_hyperparameters():
    params = make_params()
    saved = optim.Adam(params, lr=0.5, betas=(0.7, 0.8)).state_dict()
    opt = optim.Adam(params)
    opt.load_state_dict(saved)
    assert (opt.lr, opt.betas) == (0.5, (0.7, 0.8))


def test_accepts_a_module_or_named_parameters_and_names_them_in_errors():
    model = nn.Linear(2, 3, rng=np.random.default_rng(0))
    for source in (model, model.named_parameters(), model.parameters()):
        assert len(optim.SGD(source, lr=LR).params) == 2
    opt = optim.SGD(model.named_parameters(), lr=LR)
    model.bias.grad = np.zeros(5)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\) but its grad has shape \(5,\)"):
        opt.step()


@pytest.mark.parametrize("make, message", [
    (lambda ps: optim.SGD([], lr=LR), "empty parameter list"),
    (lambda ps: optim.SGD([ps[0], ps[0]], lr=LR), "same tensor"),
    (lambda ps: optim.SGD(ps, lr=-1.0), "lr must be >= 0"),
    (lambda ps: optim.SGD(ps, lr=LR, momentum=-0.5), "momentum must be >= 0"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.9)), r"beta1 must lie in \[0, 1\)"),
    (lambda ps: optim.Adagrad(ps, lr=float("nan")), "lr must be finite"),
    (lambda ps: optim.Adam([mg.tensor([1, 2])]), "only floating-point"),
    (lambda ps: optim.Adam([np.zeros(3)]), "parameters must be Tensors"),
])
def test_constructor_refuses_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(make_params())


# --- the compiled update over all parameters (minigrad.fused) --------------------------------------

def _numpy_only(opt):
    opt._update_all = lambda todo: False  # the per-parameter NumPy update, as before minigrad.fused
    return opt


def test_fused_adagrad_is_bitwise_the_numpy_update():
    """One compiled loop over all float64 parameters computes each element with NumPy's operations in
    NumPy's order: the same bits, over gradients of every scale, zeros, and an inf and a NaN."""
    from minigrad import fused
    if fused.kernel("adagrad") is None:
        pytest.skip("numba cannot compile here: the NumPy update runs")
    shapes = [(7, 5), (5,), (1,), (3, 4), (0,)]
    rng = np.random.default_rng(3)
    a = [nn.Parameter(rng.standard_normal(s)) for s in shapes]
    b = [nn.Parameter(p.data.copy()) for p in a]
    fast, slow = optim.Adagrad(a, lr=0.3), _numpy_only(optim.Adagrad(b, lr=0.3))
    for step in range(6):
        grads = [rng.standard_normal(s) * 10.0 ** rng.integers(-30, 30) for s in shapes]
        grads[1][:2] = 0.0
        if step == 4:
            grads[2][0] = np.inf if step % 2 == 0 else np.nan
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.copy(), g.T.copy().T  # b's (7, 5) grad is Fortran-ordered: made contiguous
        fast.step()
        with np.errstate(invalid="ignore"):
            slow.step()
    assert fused._KERNELS["adagrad"]  # it ran every step (a failure would have turned it off)
    for p, q in zip(a, b):
        assert p.data.tobytes() == q.data.tobytes()
    assert [s["sum"].tobytes() for s in fast.state] == [s["sum"].tobytes() for s in slow.state]
    assert np.isnan(a[2].data).all()  # the inf reached the parameter as it does through NumPy


def test_fused_adagrad_declines_what_it_cannot_update_in_place():
    """A float32 parameter, or one whose array is not C-contiguous, goes the NumPy way: a flattened copy
    would be updated and then lost."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal((4, 3))
    for make in (lambda: base.astype(np.float32), lambda: np.asfortranarray(base)):
        p = nn.Parameter(make())
        p._data = make()  # Parameter() may copy into C order: put the array itself in place
        q = nn.Parameter(p.data.copy())
        fast, slow = optim.Adagrad([p], lr=0.5), _numpy_only(optim.Adagrad([q], lr=0.5))
        g = rng.standard_normal((4, 3)).astype(p.dtype)
        p.grad, q.grad = g, g.copy()
        fast.step(), slow.step()
        assert not np.array_equal(p.data, make())  # updated, in the array the parameter holds
        np.testing.assert_array_equal(p.data, q.data)


def test_a_wrong_gradient_shape_changes_no_parameter():
    params = make_params()
    before = [p.data.copy() for p in params]
    opt = optim.Adagrad(params, lr=LR)
    params[0].grad, params[1].grad = np.ones((3, 2)), np.ones(5)
    with pytest.raises(ValueError, match=r"parameter #1 has shape \(4,\) but its grad has shape \(5,\)"):
        opt.step()
    assert all(np.array_equal(p.data, b) for p, b in zip(params, before))
    assert opt.steps.tolist() == [0, 0]


def test_a_kernel_that_fails_to_compile_leaves_the_numpy_update(monkeypatch):
    """Numba refusing (no cache folder, a damaged cache file, a typing error) costs speed, never a step."""
    from minigrad import fused

    def broken(*args):
        raise RuntimeError("cannot compile here")
    monkeypatch.setitem(fused._KERNELS, "adagrad", broken)
    a, b = make_params(), make_params()
    fast, slow = optim.Adagrad(a, lr=LR), _numpy_only(optim.Adagrad(b, lr=LR))
    run(fast, a, [1, 2])
    run(slow, b, [1, 2])
    assert fused._KERNELS["adagrad"] is False  # turned off for the rest of the process
    for p, q in zip(a, b):
        assert p.data.tobytes() == q.data.tobytes()
    assert fast.steps.tolist() == [2, 2]


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=15)
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**16),
       scale=st.integers(-30, 30), steps=st.integers(1, 4))
def test_each_optimizers_per_array_form_is_bitwise_its_numpy_update(name, shape, seed, scale, steps):
    """`fused_update` (what a compiled training step runs, rnn.kernels.training) over 1-d views computes
    each element as `_update`'s NumPy lines do: the same bits, buffers included, over steps and scales."""
    from minigrad import fused
    kernel = fused.kernel(CASES[name][0]([nn.Parameter(np.zeros(1))]).fused_update)
    if kernel is None:
        pytest.skip("numba cannot compile here")
    rng = np.random.default_rng(seed)
    p = nn.Parameter(rng.standard_normal(shape))
    q = nn.Parameter(p.data.copy())
    ref, opt = CASES[name][0]([p]), CASES[name][0]([q])
    for t in range(1, steps + 1):
        g = rng.standard_normal(shape) * 10.0 ** scale
        ref._update(p, g, ref.state[0], t)
        kernel(q.data.reshape(-1), g.reshape(-1), *[opt.state[0][b].reshape(-1) for b in opt._buffer_names()],
               *opt.fused_scalars(t))
    assert p.data.tobytes() == q.data.tobytes()
    for b in ref._buffer_names():
        assert ref.state[0][b].tobytes() == opt.state[0][b].tobytes()
