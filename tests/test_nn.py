import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.testing import arrays


class Block(nn.Module):
    def __init__(self, rng):
        self.gain = nn.Parameter(np.ones(3))
        self.inner = nn.Linear(2, 3, rng=rng)


class Net(nn.Module):
    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(5, 2, rng=rng)
        self.blocks = [Block(rng), Block(rng)]
        self.head = nn.Linear(3, 1, bias=False, rng=rng)


NET_NAMES = ["embed.weight",
             "blocks.0.gain", "blocks.0.inner.weight", "blocks.0.inner.bias",
             "blocks.1.gain", "blocks.1.inner.weight", "blocks.1.inner.bias",
             "head.weight"]


# --- naming and order ----------------------------------------------------------------
def test_named_parameters_gives_dotted_names_through_nested_modules_and_lists():
    assert [n for n, _ in Net().named_parameters()] == NET_NAMES


def test_named_parameters_order_is_stable_across_calls_and_instances():
    a, b = Net(seed=0), Net(seed=1)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in a.named_parameters()]
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert [p for _, p in a.named_parameters()] == a.parameters()


def test_named_parameters_prefix_and_a_shared_parameter_listed_once():
    net = Net()
    net.blocks[1].gain = net.blocks[0].gain
    names = [n for n, _ in net.named_parameters(prefix="net.")]
    assert names == ["net." + n for n in NET_NAMES if n != "blocks.1.gain"]
    assert len({id(p) for p in net.parameters()}) == len(net.parameters())


def test_linear_without_bias_has_only_a_weight():
    assert [n for n, _ in nn.Linear(2, 3, bias=False).named_parameters()] == ["weight"]


def test_zero_grad_clears_every_parameter():
    net = Net()
    for p in net.parameters():
        p.grad = np.ones(p.shape)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# --- state_dict ----------------------------------------------------------------------
def test_state_dict_round_trip_copies_in_and_out():
    src, dst = Net(seed=0), Net(seed=1)
    state = src.state_dict()
    assert list(state) == NET_NAMES
    dst.load_state_dict(state)
    for (n, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    # Neither the module nor the dict may alias the other's arrays afterwards.
    state["head.weight"][...] = 123.0
    assert not (dst.head.weight.data == 123.0).any()
    assert not (src.head.weight.data == 123.0).any()


def _bad_states(good):
    w = "blocks.0.inner.weight"
    return {
        "wrong shape": ({**good, w: np.zeros((2, 3))}, r"blocks.0.inner.weight: shape \(2, 3\) in the state, \(3, 2\)"),
        "missing key": ({k: v for k, v in good.items() if k != "head.weight"}, "missing: head.weight"),
        "unexpected key": ({**good, "head.bias": np.zeros(1)}, "unexpected: head.bias"),
        "wrong dtype": ({**good, w: good[w].astype(np.float32)}, "blocks.0.inner.weight: dtype float32"),
    }


@pytest.mark.parametrize("case", ["wrong shape", "missing key", "unexpected key", "wrong dtype"])
def test_load_state_dict_refusals_change_nothing(case):
    target = Net(seed=0)
    before = target.state_dict()
    # Every other entry is valid and different, so a partial load would show.
    bad, message = _bad_states(Net(seed=1).state_dict())[case]
    with pytest.raises(mg.ShapeError, match=message):
        target.load_state_dict(bad)
    for n, arr in target.state_dict().items():
        np.testing.assert_array_equal(arr, before[n], err_msg=n)


# --- gradients -----------------------------------------------------------------------
def call_with(module, fn, **tensors):
    """Run fn() with module's parameters replaced by the given tensors (gradcheck perturbs its own copies)."""
    saved = {k: getattr(module, k) for k in tensors}
    for k, t in tensors.items():
        setattr(module, k, t)
    try:
        return fn()
    finally:
        for k, t in saved.items():
            setattr(module, k, t)


@given(st.data())
def test_linear_gradients(data):
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2), label="leading dims")
    n_in, n_out = data.draw(st.integers(1, 4), label="in"), data.draw(st.integers(1, 4), label="out")
    bias = data.draw(st.booleans(), label="bias")
    layer = nn.Linear(n_in, n_out, bias=bias, rng=np.random.default_rng(0))
    x = mg.tensor(data.draw(arrays((*lead, n_in))), requires_grad=True)
    w = mg.tensor(data.draw(arrays((n_out, n_in))), requires_grad=True)
    if bias:
        b = mg.tensor(data.draw(arrays((n_out,))), requires_grad=True)
        assert mg.gradcheck(lambda x, w, b: call_with(layer, lambda: layer(x), weight=w, bias=b), [x, w, b])
    else:
        assert mg.gradcheck(lambda x, w: call_with(layer, lambda: layer(x), weight=w), [x, w])


@given(st.data())
def test_embedding_gradients_accumulate_over_repeated_indices(data):
    num, dim = data.draw(st.integers(1, 5), label="num"), data.draw(st.integers(1, 3), label="dim")
    idx_shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=2), label="index shape")
    idx = np.array(data.draw(st.lists(st.integers(-num, num - 1), min_size=int(np.prod(idx_shape)),
                                      max_size=int(np.prod(idx_shape))))).reshape(idx_shape)
    emb = nn.Embedding(num, dim, rng=np.random.default_rng(0))
    w = mg.tensor(data.draw(arrays((num, dim))), requires_grad=True)
    assert mg.gradcheck(lambda w: call_with(emb, lambda: emb(idx), weight=w), [w])
    out = emb(idx)
    assert out.shape == (*idx_shape, dim)


def test_embedding_gradient_counts_each_lookup():
    emb = nn.Embedding(4, 2, rng=np.random.default_rng(0))
    idx = np.array([1, 3, 1, 1])
    emb(idx).sum().backward()
    expected = np.bincount(idx, minlength=4)[:, None] * np.ones((1, 2))
    np.testing.assert_array_equal(emb.weight.grad, expected)


def test_module_input_errors_name_the_problem():
    with pytest.raises(mg.ShapeError, match=r"Linear: input has shape \(2, 5\), expected last dim 3"):
        nn.Linear(3, 1)(mg.zeros(2, 5))
    with pytest.raises(TypeError, match="indices must be integers"):
        nn.Embedding(3, 2)(np.array([0.0, 1.0]))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        nn.Embedding(3, 2)(np.array([0, 3]))
