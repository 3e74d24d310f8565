"""One record per primitive: its scalar forms agree with its forward and its VJP, and a new op is one place.

The kernel generator emits each element-wise op's `scalar` and `partials`; here they are evaluated as
plain Python on random elements and compared with the forward and the VJP run on arrays.  Then an op
defined in this module, as a user would (the README's softplus), works in the engine, in gradcheck,
in the pictures and inside a custom cell on both backends.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
import viz
from minigrad import ops
from minigrad.nn import Parameter

ELEMENTWISE = sorted(name for name, p in mg.PRIMITIVES.items() if p.elementwise and not name.startswith("test_"))

# where each op is smooth (away from kinks and jumps), as (low, high) per argument
DOMAIN = {"log": [(0.2, 3.0)], "power": [(0.2, 3.0)], "mod": [(0.1, 0.9), (0.5, 2.0)]}
ATTRS = {"power": [{"exponent": e} for e in (-1.0, 1.0, 2.0, 0.5, 3.0)]}
KERNEL_NAMES = {"math": math, "np": np, "one": 1.0, "zero": 0.0, "abs": abs, "max": max,
                "_tanh": lambda a, one: math.tanh(a),
                "_sigmoid": lambda a, one: 1 / (1 + math.exp(-a)) if a >= 0 else math.exp(a) / (1 + math.exp(a))}


def _elements(name, rng, attrs, n=6):
    p = mg.PRIMITIVES[name]
    nargs = p.forward.__code__.co_argcount - len(p.forward.__defaults__ or ()) - len(attrs)
    args = [rng.uniform(*(DOMAIN.get(name, [(-2.0, 2.0)] * nargs)[i]), n) for i in range(nargs)]
    if name == "mod":                       # a = b (k + f): floor(a / b) = k, far from a jump
        args = [args[1] * (rng.integers(-2, 3, n) + args[0]), args[1]]
    if name in ("equal", "less"):           # some equal, the rest well apart
        args[1] = np.where(rng.random(n) < 0.5, args[0], args[0] + rng.choice([-0.7, 0.7], n))
    return args


@pytest.mark.parametrize("name", ELEMENTWISE)
@settings(max_examples=15)
@given(seed=st.integers(0, 2**16))
def test_scalar_forms_agree_with_the_forward_and_the_vjp(name, seed):
    rng = np.random.default_rng(seed)
    prim = mg.PRIMITIVES[name]
    for attrs in ATTRS.get(name, [{}]):
        args = _elements(name, rng, attrs)
        out = prim.forward(*args, **attrs)
        g = rng.uniform(-1, 1, out.shape)
        want = prim.vjp_rule(g, out, *args, **attrs)
        consts = {}
        const = lambda v: consts.setdefault(f"c{len(consts)}", v) and [k for k, x in consts.items() if x == v][0]  # noqa: E731
        names = [f"a{i}" for i in range(len(args))]
        scalar = prim.scalar_form(names, attrs, const)
        partials = prim.partial_forms("g", "out", names, attrs, const)
        assert len(partials) == len(args)
        for e in range(out.size):
            env = dict(KERNEL_NAMES, **consts, **{n: float(a[e]) for n, a in zip(names, args)})
            assert math.isclose(eval(scalar, env), out[e], rel_tol=1e-12, abs_tol=1e-12), (scalar, e)
            env.update(g=float(g[e]), out=float(out[e]))
            for i, (form, w) in enumerate(zip(partials, want)):
                if form is None:
                    assert w is None, f"{name}: argument {i} has a VJP term but no scalar partial"
                    continue
                assert math.isclose(eval(form, env), np.broadcast_to(w, out.shape)[e], rel_tol=1e-10,
                                    abs_tol=1e-12), (form, e)


def test_every_primitive_has_a_vjp():
    assert all(p.vjp_rule is not None for p in mg.PRIMITIVES.values()), \
        [n for n, p in mg.PRIMITIVES.items() if p.vjp_rule is None]


# --- what a forward saves for its vjp ---------------------------------------------------------------

SEEN = []


@mg.primitive("test_primitives__cube_saving_square", saves=True)
def _cube_saving_square(a):
    square = a * a
    return square * a, square


@_cube_saving_square.vjp
def _(g, out, a, saved=None):
    SEEN.append(saved)
    square = saved if saved is not None else a * a   # recorded (create_graph): on tensors, made again
    return (g * 3.0 * square,)


def test_a_saving_primitive_hands_its_residuals_to_a_plain_backward_only():
    x = mg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = _cube_saving_square(x)
    np.testing.assert_array_equal(y.data, x.data ** 3)
    np.testing.assert_array_equal(ops.test_primitives__cube_saving_square(x.data), x.data ** 3)  # arrays: output only
    SEEN.clear()
    y.sum().backward()
    np.testing.assert_array_equal(SEEN[0], x.data ** 2)
    np.testing.assert_array_equal(x.grad, 3 * x.data ** 2)
    SEEN.clear()
    (g,) = mg.grad(_cube_saving_square(x).sum(), [x], create_graph=True)
    assert SEEN == [None]
    g.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data ** 2 + 6 * x.data)


# --- a new op, in one place: the README's softplus ------------------------------------------------

@mg.primitive("softplus", scalar=lambda a: f"(max({a}, zero) + math.log1p(math.exp(-abs({a}))))",
              partials=lambda g, out, a: (f"{g} / (one + math.exp(-{a}))",))
def softplus(a):
    """log(1 + e^a), a smooth relu."""
    return np.logaddexp(0, a)


@softplus.vjp
def _(g, out, a):
    return (g * ops.sigmoid(a),)


def test_a_new_primitive_works_in_the_engine_and_gradcheck():
    x = mg.tensor([-30.0, -1.0, 0.0, 2.0, 40.0], requires_grad=True)
    y = softplus(x)
    np.testing.assert_allclose(y.data, np.log1p(np.exp(-np.abs(x.data))) + np.maximum(x.data, 0), rtol=1e-15)
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad, 2 / (1 + np.exp(-x.data)), rtol=1e-15)
    assert mg.gradcheck(lambda x: softplus(x * 0.1), [x])
    assert isinstance(ops.softplus(np.array([1.0])), np.ndarray)      # on arrays: no tensor, nothing recorded


def test_a_new_primitive_is_drawn():
    x = mg.tensor(np.ones(3), requires_grad=True, name="x")
    src = viz.draw_graph(softplus(x).sum()).source
    assert ">softplus<" in src


class SoftplusCell(rnn.Cell):
    """h' = softplus(W h + U x) - 1: the new op inside a step."""

    def __init__(self, I, H, rng):
        super().__init__(I, H)
        self.W, self.U = Parameter(rng.normal(0, 0.4, (H, H))), Parameter(rng.normal(0, 0.4, (H, I)))

    def step(self, x, h):
        return softplus(h @ self.W.T + x @ self.U.T) - 1.0


@pytest.mark.slow
def test_a_new_primitive_runs_in_a_custom_cell_on_both_backends():
    rng = np.random.default_rng(0)
    cell = SoftplusCell(2, 3, rng)
    xs = mg.tensor(rng.normal(size=(6, 2, 2)), requires_grad=True)
    got = {}
    for backend in ("graph", "numba"):
        cell.zero_grad()
        xs.grad = None
        res = rnn.run(cell, xs, backend=backend)
        res.outputs.sum().backward()
        assert res.backend == backend          # the generator fused it from the record's scalar forms
        got[backend] = (res.outputs.data.copy(), cell.W.grad.copy(), xs.grad.copy())
    for a, b in zip(*got.values()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert mg.gradcheck(lambda xs: rnn.run(cell, xs, backend="numba").outputs, [xs])
