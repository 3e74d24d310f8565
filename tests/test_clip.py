import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim


def with_grads(*grads, dtype=np.float64):
    params = []
    for g in grads:
        p = nn.Parameter(np.zeros(np.shape(g), dtype=dtype))
        p.grad = np.array(g, dtype=dtype)
        params.append(p)
    return params


def l2(arrays):
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


class TwoLayer(nn.Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.fc1 = nn.Linear(2, 3, rng=rng)
        self.fc2 = nn.Linear(3, 1, rng=rng)


# --- clip_grad_value_ ----------------------------------------------------------------
def test_clip_value_clips_each_element_in_place():
    g = np.array([-3.0, 0.5, 2.0, -0.1])
    params = with_grads(g, [[4.0, -4.0]])
    held = params[0].grad
    mg.clip_grad_value_(params, 1.0)
    np.testing.assert_array_equal(params[0].grad, np.minimum(np.maximum(g, -1.0), 1.0))
    np.testing.assert_array_equal(params[1].grad, [[1.0, -1.0]])
    assert params[0].grad is held


def test_clip_value_skips_params_without_grad_and_refuses_bad_values():
    p = nn.Parameter(np.zeros(2))
    mg.clip_grad_value_([p], 1.0)
    assert p.grad is None
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="clip_value"):
            mg.clip_grad_value_([p], bad)


# --- clip_grad_norm_ -----------------------------------------------------------------
def test_clip_norm_returns_total_norm_and_scales_to_max_norm():
    grads = [np.array([3.0, 4.0]), np.array([[12.0]])]
    params = with_grads(*grads)
    total = mg.clip_grad_norm_(params, 6.5)
    assert isinstance(total, float)
    assert total == pytest.approx(l2(grads), rel=1e-15)
    coef = 6.5 / (l2(grads) + 1e-6)     # torch.nn.utils.clip_grad_norm_'s coefficient
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-15)
    assert l2([p.grad for p in params]) == pytest.approx(6.5, rel=1e-6)


def test_clip_norm_below_the_limit_leaves_grads_bit_for_bit():
    grads = [np.array([0.3, -0.4]), np.array([1e-3])]
    params = with_grads(*grads)
    total = mg.clip_grad_norm_(params, 10.0)
    assert total == pytest.approx(l2(grads))
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad, g)


def test_clip_norm_keeps_float32_grads_float32():
    params = with_grads([30.0, 40.0], dtype=np.float32)
    total = mg.clip_grad_norm_(params, 1.0)
    assert params[0].grad.dtype == np.float32
    assert total == pytest.approx(l2([[30.0, 40.0]]))
    assert l2([params[0].grad]) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_clip_norm_neither_overflows_nor_underflows(scale):
    # sum(g**2) would be inf (or 0) here although the norm itself is representable.
    params = with_grads([3.0 * scale, 4.0 * scale])
    total = mg.clip_grad_norm_(params, 1.0)
    assert total == pytest.approx(5.0 * scale, rel=1e-12)
    assert np.isfinite(params[0].grad).all()


def test_clip_norm_skips_params_without_grad():
    params = with_grads([3.0, 4.0]) + [nn.Parameter(np.ones(2))]
    assert mg.clip_grad_norm_(params, 100.0) == pytest.approx(5.0)
    assert params[1].grad is None


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_norm_raises_naming_the_parameters(bad):
    model = TwoLayer()
    for name, p in model.named_parameters():
        p.grad = np.ones(p.shape)
    model.fc2.weight.grad[0, 1] = bad
    saved = {n: p.grad.copy() for n, p in model.named_parameters()}
    with pytest.raises(mg.NonFiniteGradError) as info:
        mg.clip_grad_norm_(model, 1.0)
    msg = str(info.value)
    assert "fc2.weight" in msg and "1 of 3 non-finite" in msg
    assert "fc1.weight" not in msg and "fc2.bias" not in msg
    assert ("nan" if np.isnan(bad) else "inf") in msg
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, saved[n])


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_norm_can_be_returned_instead(bad):
    params = with_grads([1e3, 2.0], [bad, 0.0])
    saved = [p.grad.copy() for p in params]
    total = mg.clip_grad_norm_(params, 1.0, error_if_nonfinite=False)
    assert not math.isfinite(total)
    assert math.isnan(total) == math.isnan(bad)
    for p, g in zip(params, saved):
        np.testing.assert_array_equal(p.grad, g)


def test_training_loop_can_skip_a_non_finite_step():
    params = with_grads([1.0, 2.0])
    opt = optim.Adam(params, lr=0.1)
    opt.step()
    before_params, before_state = params[0].data.copy(), opt.state_dict()
    params[0].grad = np.array([np.nan, 1.0])
    norm = mg.clip_grad_norm_(params, 1.0, error_if_nonfinite=False)
    if np.isfinite(norm):
        opt.step()
    opt.zero_grad()
    np.testing.assert_array_equal(params[0].data, before_params)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, before_state[k])
    assert params[0].grad is None


def test_clip_norm_refuses_bad_max_norm_and_non_tensors():
    with pytest.raises(ValueError, match="max_norm"):
        mg.clip_grad_norm_(with_grads([1.0]), -1.0)
    with pytest.raises(TypeError, match="item 0 is ndarray"):
        mg.clip_grad_norm_([np.ones(2)], 1.0)


def test_a_scalar_parameter_s_gradient_counts_in_the_norm():
    """A 0-d gradient divided by the scale is a NumPy scalar, not an array: the in-place squaring must not
    be asked of it."""
    s = mg.nn.Parameter(np.array(2.0))
    v = mg.nn.Parameter(np.zeros(2))
    s.grad, v.grad = np.array(3.0), np.array([4.0, 0.0])
    assert mg.grad_norm([s, v]) == 5.0
    assert mg.clip_grad_norm_([s, v], 1.0) == 5.0
    np.testing.assert_allclose([float(s.grad), *v.grad], [0.6, 0.8, 0.0], rtol=1e-6)


def test_the_compiled_rescaling_is_numpy_s_to_the_bit(monkeypatch):
    """clip_grad_norm_ rescales every float64 gradient in one compiled loop (minigrad.fused): the
    gradients it leaves are those of the NumPy loop, bit for bit — a trainer's losses depend on it."""
    from minigrad import fused
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(s) * 10 for s in [(7, 5), (5,), (3, 4, 2)]]
    compiled, numpy_only = with_grads(*grads), with_grads(*grads)
    mg.clip_grad_norm_(compiled, 1.0)
    monkeypatch.setitem(fused._KERNELS, "scale", False)
    mg.clip_grad_norm_(numpy_only, 1.0)
    for a, b in zip(compiled, numpy_only):
        np.testing.assert_array_equal(a.grad, b.grad)
