"""trace(): the recorded graph as plain data, and evaluating it again."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigrad as mg
from minigrad.nn import Parameter
from minigrad.testing import arrays


def model(x, w, b, targets=None):
    h = (x @ w + b).tanh()
    logits = mg.concatenate([h, h * 2.0], axis=1)[:, ::2]
    if targets is not None:
        return mg.cross_entropy(logits, targets)
    return (mg.logsumexp(logits, axis=1) + mg.log_softmax(logits).sum(axis=1)).mean()


def build(seed=0):
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.normal(size=(3, 4)), name="x")                 # named: an input
    w = Parameter(rng.normal(size=(4, 5)), name="w")
    b = Parameter(rng.normal(size=(5,)), name="b")
    return x, w, b


def test_ids_are_n0_upwards_in_topological_order():
    x, w, b = build()
    g = mg.trace(model(x, w, b))
    assert list(g.nodes) == [f"n{i}" for i in range(len(g.nodes))]
    pos = {nid: i for i, nid in enumerate(g.nodes)}
    assert g.edges and all(pos[e.src] < pos[e.dst] for e in g.edges)
    assert g.topological_order() == list(g.nodes)


def test_two_identical_computations_give_identical_graphs():
    g1 = mg.trace(model(*build(0)))
    g2 = mg.trace(model(*build(1)))     # other values, same computation
    assert list(g1.nodes.values()) == list(g2.nodes.values())
    assert g1.edges == g2.edges
    for n1, n2 in zip(g1.nodes.values(), g2.nodes.values()):
        assert n1.attrs.keys() == n2.attrs.keys()


def test_a_different_computation_gives_a_different_graph():
    x, w, b = build()
    g1 = mg.trace(model(x, w, b))
    g2 = mg.trace(model(x, w, b) * 2.0)
    assert list(g1.nodes.values()) != list(g2.nodes.values())


def test_roles():
    x, w, b = build()
    c = mg.tensor(np.ones(5))                           # unnamed, no grad: a constant
    v = mg.tensor(np.ones(5), requires_grad=True)       # a plain input that requires grad
    out = ((x @ w + b) * c + v).sum()
    g = mg.trace(out)
    by_tensor = {id(t): g.nodes[nid] for nid, t in g.tensors.items()}
    assert by_tensor[id(w)].role == "parameter" and by_tensor[id(w)].name == "w"
    assert by_tensor[id(b)].role == "parameter"
    assert by_tensor[id(x)].role == "input" and by_tensor[id(x)].name == "x"
    assert by_tensor[id(v)].role == "input"
    assert by_tensor[id(c)].role == "constant"
    np.testing.assert_array_equal(by_tensor[id(c)].value, c.data)
    assert by_tensor[id(w)].value is None                # only constants carry their array
    assert by_tensor[id(out)].role == "output" and by_tensor[id(out)].op == "sum"
    ops = [n for n in g.nodes.values() if n.op != "leaf"]
    assert {n.role for n in ops} == {"op", "output"}
    assert [n.id for n in g.by_role("output")] == [list(g.nodes)[-1]]


def test_nodes_carry_shape_dtype_and_attrs():
    x = mg.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    g = mg.trace(x.sum(axis=1, keepdims=True))
    leaf, s = g.nodes.values()
    assert (leaf.op, leaf.shape, leaf.dtype) == ("leaf", (2, 3), "float32")
    assert (s.op, s.shape, s.dtype) == ("sum", (2, 1), "float32")
    assert s.attrs == {"axis": 1, "keepdims": True}


def test_edges_go_parent_to_child_with_argument_slot():
    a = mg.tensor([1.0, 2.0], requires_grad=True, name="a")
    b = mg.tensor([3.0, 4.0], requires_grad=True, name="b")
    out = mg.matmul(b, a)                       # b is argument 0, a argument 1
    g = mg.trace(out)
    ids = {t.name: nid for nid, t in g.tensors.items() if t.name}
    out_id = next(nid for nid, t in g.tensors.items() if t is out)
    assert sorted((e.src, e.dst, e.slot) for e in g.edges) == sorted(
        [(ids["b"], out_id, 0), (ids["a"], out_id, 1)])
    assert g.inputs_of(out_id) == [ids["b"], ids["a"]]


def test_reused_node_has_one_node_and_two_edges():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    g = mg.trace(a * a)
    assert len(g.nodes) == 2
    assert sorted(e.slot for e in g.edges) == [0, 1]
    assert len({e.src for e in g.edges}) == 1


def test_trace_of_several_roots():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    h = a.exp()
    y1, y2 = h.sum(), (h * a).sum()
    g = mg.trace(y1, y2)
    assert len(g.by_role("output")) == 2
    assert len(g.nodes) == 5        # a, exp, sum, mul, sum: the shared exp appears once


def _feeds(g, values):
    return {nid: mg.tensor(values[id(t)], requires_grad=t.requires_grad)
            for nid, t in g.tensors.items() if g.nodes[nid].op == "leaf" and g.nodes[nid].role != "constant"}


@pytest.mark.parametrize("with_targets", [False, True])
def test_evaluate_recomputes_the_same_values(with_targets):
    x, w, b = build()
    out = model(x, w, b, np.array([0, 2, 1]) if with_targets else None)
    g = mg.trace(out)
    values = g.evaluate(_feeds(g, {id(t): t.data for t in g.tensors.values()}))
    assert values.keys() == g.nodes.keys()
    for nid, t in g.tensors.items():
        np.testing.assert_array_equal(values[nid].data, t.data)
        assert values[nid].shape == g.nodes[nid].shape and values[nid].dtype.name == g.nodes[nid].dtype


@given(st.data())
def test_evaluate_with_new_feeds_matches_a_fresh_forward_and_is_differentiable(data):
    x, w, b = build()
    g = mg.trace(model(x, w, b))
    new = {id(x): data.draw(arrays((3, 4))), id(w): data.draw(arrays((4, 5))), id(b): data.draw(arrays((5,)))}
    feeds = _feeds(g, new)
    values = g.evaluate(feeds)
    out_id = g.by_role("output")[0].id
    fresh = model(*(mg.tensor(new[id(t)], requires_grad=True) for t in (x, w, b)))
    np.testing.assert_allclose(values[out_id].data, fresh.data, rtol=1e-12)

    # The evaluated graph can be differentiated like the original.
    w_id = next(nid for nid, t in g.tensors.items() if t is w)
    assert mg.gradcheck(lambda wt: g.evaluate({**feeds, w_id: wt})[out_id], [feeds[w_id]])


def test_evaluate_without_a_feed_names_the_missing_node():
    x, w, b = build()
    g = mg.trace(model(x, w, b))
    w_id = next(nid for nid, t in g.tensors.items() if t is w)
    feeds = {k: v for k, v in _feeds(g, {id(t): t.data for t in g.tensors.values()}).items() if k != w_id}
    with pytest.raises(KeyError, match=w_id):
        g.evaluate(feeds)
