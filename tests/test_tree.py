"""Recursive (tree) networks, Goodfellow et al. §10.6, Fig. 10.14: rnn.Tree, rnn.tree, rnn.RecursiveCell,
rnn.run_tree and viz.draw_tree — held to finite differences, to the equations in plain NumPy, to
the shape of the tree in the picture, to trees far deeper than Python's recursion limit, and to
clear messages for bad input."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
import viz
from minigrad.errors import ShapeError


# --- random binary trees --------------------------------------------------------------------------

@st.composite
def shapes(draw, max_leaves=6):
    """A random binary bracketing of leaves 0, 1, ..., n−1 (nested tuples of leaf numbers): adjacent
    subtrees are merged in a drawn order until one is left."""
    n = draw(st.integers(1, max_leaves))
    parts = list(range(n))
    while len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        parts[i:i + 2] = [(parts[i], parts[i + 1])]
    return parts[0]


def leaf_count(spec):
    return 1 + max(_numbers(spec)) if isinstance(spec, tuple) else 1


def _numbers(spec):
    return [k for c in spec for k in (_numbers(c) if isinstance(c, tuple) else [c])]


def numpy_tree(cell, spec, xs):
    """The recursive net's equations, in NumPy, by plain recursion over the nested tuples: every
    node's state in post-order (children first, left subtree first) and the root's output."""
    p = {k: v.data for k, v in cell.named_parameters()}
    states = []

    def h(s):
        if isinstance(s, tuple):
            left, right = h(s[0]), h(s[1])
            out = np.tanh(left @ p["weight_left"].T + right @ p["weight_right"].T + p["bias"])
        else:
            out = np.tanh(xs[s] @ p["weight_leaf"].T + p["bias"])
        states.append(out)
        return out
    root = h(spec)
    return states, root @ p["weight_out"].T + p["bias_out"]


def problem(spec, B, I, H, K, seed):
    rng = np.random.default_rng(seed)
    cell = rnn.RecursiveCell(I, H, output_size=K, rng=rng)
    n = leaf_count(spec)
    xs = [mg.tensor(rng.uniform(-1, 1, (B, I)), requires_grad=True) for _ in range(n)]
    y = rng.integers(0, K, B)
    return cell, xs, y


sizes = dict(B=st.integers(1, 2), I=st.integers(1, 3), H=st.integers(1, 3), K=st.integers(2, 3),
             seed=st.integers(0, 2**16))


@settings(max_examples=15)
@given(spec=shapes(), **sizes)
def test_gradients_through_structure_match_finite_differences(spec, B, I, H, K, seed):
    cell, xs, y = problem(spec, B, I, H, K, seed)

    def loss_and_root(*inputs):
        leaves = inputs[:len(xs)]
        r = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: leaves[k]), target=y)
        return r.loss, r.state
    assert mg.gradcheck(loss_and_root, [*xs, *cell.parameters()])


@given(spec=shapes(max_leaves=9), **sizes)
def test_states_and_output_are_the_equations_of_fig_10_14(spec, B, I, H, K, seed):
    cell, xs, _ = problem(spec, B, I, H, K, seed)
    r = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: xs[k]))
    states, o = numpy_tree(cell, spec, [x.data for x in xs])
    assert len(r.states) == len(states)
    for got, want in zip(r.states, states):
        np.testing.assert_allclose(got.data, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.output.data, o, rtol=0, atol=1e-10)


@given(spec=shapes(max_leaves=9))
def test_the_traced_structure_is_the_tree(spec):
    cell = rnn.RecursiveCell(1, 2, rng=np.random.default_rng(0))
    r = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: np.array([float(k)])))
    nodes, n = r.nodes, leaf_count(spec)
    assert [int(leaf.x.data[0, 0]) for leaf in r.leaves] == list(range(n))   # leaves left to right
    assert [leaf.span for leaf in r.leaves] == [(k, k) for k in range(1, n + 1)]
    assert r.root.parent is None and r.root.depth == 0 and r.root.span == (1, n)
    for node in nodes:
        for c in node.children:
            assert c < node.index and nodes[c].parent == node.index and nodes[c].depth == node.depth + 1
        if node.children:
            assert node.height == 1 + max(nodes[c].height for c in node.children)
            assert (nodes[node.children[0]].span[0], nodes[node.children[-1]].span[1]) == node.span
    assert r.depth == r.root.height + 1 <= n


def test_a_batch_of_trees_of_one_shape_is_each_tree_on_its_own():
    rng = np.random.default_rng(3)
    cell = rnn.RecursiveCell(2, 3, output_size=2, rng=rng)
    spec = ((0, 1), (2, (3, 4)))
    X = rng.uniform(-1, 1, (4, 5, 2))   # 4 trees of 5 leaves
    together = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: X[:, k]), target=np.array([0, 1, 1, 0]))
    for b in range(4):
        alone = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: X[b, k]))   # (input_size,) leaves: B = 1
        for s, t in zip(together.states, alone.states):
            np.testing.assert_allclose(s.data[b], t.data[0], rtol=0, atol=1e-12)


class SumCell(rnn.TreeCell):
    """A tree cell of any arity written outside the package: h = tanh(A x) at a leaf and
    tanh(mean of the children's states + c) above — any number of children."""

    def __init__(self, input_size, hidden_size, rng=None):
        super().__init__(input_size, hidden_size)
        self.A, self.c = self._init(rng, (hidden_size, input_size), (hidden_size,))

    def leaf(self, x):
        return (x @ self.A.T).tanh()

    def node(self, children):
        return (sum(children[1:], children[0]) * (1 / len(children)) + self.c).tanh()


def test_a_custom_cell_takes_nodes_of_any_arity():
    cell = SumCell(2, 3, rng=np.random.default_rng(0))
    xs = [np.full(2, v) for v in (0.1, 0.2, 0.3, 0.4, 0.5)]
    r = rnn.run_tree(cell, rnn.tree(((xs[0], xs[1], xs[2]), (xs[3],), xs[4])))
    a, c = cell.A.data, cell.c.data
    leaf = [np.tanh(a @ x) for x in xs]
    want = np.tanh((np.tanh(sum(leaf[:3]) / 3 + c) + np.tanh(leaf[3] + c) + leaf[4]) / 3 + c)
    np.testing.assert_allclose(r.state.data[0], want, rtol=0, atol=1e-12)
    assert r.output is r.state and [len(n.children) for n in r.nodes if n.children] == [3, 1, 3]


# --- deep trees -------------------------------------------------------------------------------------

def test_a_5000_leaf_chain_runs_forward_and_backward_without_recursion():
    spec = "a"
    for _ in range(4999):   # a sentence parsed as a left-branching chain: 4999 levels deep
        spec = (spec, "b")
    t = rnn.tree(spec, leaf={"a": np.array([0.5]), "b": np.array([-0.3])})
    assert repr(t) == "Tree(5000 leaves, 9999 nodes)" and len(t.leaves()) == 5000
    cell = rnn.RecursiveCell(1, 2, output_size=2, rng=np.random.default_rng(0))
    r = rnn.run_tree(cell, t, target=1)
    assert r.depth == 5000 and r.root.span == (1, 5000)
    r.loss.backward()
    assert all(s.grad is not None for s in r.states) and np.isfinite(cell.weight_left.grad).all()
    p = {k: v.data for k, v in cell.named_parameters()}   # the same chain as a NumPy loop
    h = np.tanh(0.5 * p["weight_leaf"][:, 0] + p["bias"])
    hb = np.tanh(-0.3 * p["weight_leaf"][:, 0] + p["bias"])
    for _ in range(4999):
        h = np.tanh(p["weight_left"] @ h + p["weight_right"] @ hb + p["bias"])
    np.testing.assert_allclose(r.state.data[0], h, rtol=0, atol=1e-10)
    src = viz.draw_tree(r, grad=True).source   # past the budget: folded, not refused
    assert len(re.findall(r"^\s*\"?h\d+\"? \[", src, re.M)) < viz.BUDGET and "nodes folded" in src


# --- the picture ------------------------------------------------------------------------------------

EDGE = re.compile(r'^\s*"?([\w.]+)"?\s*->\s*"?([\w.]+)"?\s*(\[[^\n]*\])?', re.M)


def visible_edges(src):
    """(src, dst, label or None) of the drawn edges, leaving out the invisible ones that order rows."""
    out = []
    for a, b, attrs in EDGE.findall(src):
        if "style=invis" in attrs:
            continue
        label = re.search(r"label=<(.*?)>", attrs)
        out.append((a, b, label.group(1) if label else None))
    return out


@settings(max_examples=25)
@given(spec=shapes(max_leaves=9), loss=st.booleans())
def test_the_picture_is_the_tree_with_the_book_s_weights_on_its_edges(spec, loss):
    cell = rnn.RecursiveCell(2, 3, output_size=2, rng=np.random.default_rng(1))
    r = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: np.full(2, 0.1 * k)), target=0 if loss else None)
    src = viz.draw_tree(r).source
    edges = visible_edges(src)
    into = {}
    for a, b, label in edges:
        into.setdefault(b, []).append((a, label))
    for n in r.nodes:
        got = sorted(into[f"h{n.index}"])
        if n.is_leaf:
            assert got == [(f"x{n.index}", "V")]
        else:
            assert got == sorted([(f"h{n.children[0]}", "U"), (f"h{n.children[1]}", "W")])
    root = f"h{r.root.index}"
    assert into["viz.o"] == [(root, "W_out")]
    drawn_states = set(re.findall(r'^\s*"?(h\d+)"? \[', src, re.M))
    assert drawn_states == {f"h{n.index}" for n in r.nodes}
    assert ("viz.L" in into) == loss and (sorted(a for a, _ in into["viz.L"]) == ["viz.o", "viz.y"] if loss else True)
    assert 'rankdir=BT' in src


def test_the_picture_names_words_spans_and_lists_each_parameter_once():
    vec = {w: np.eye(3)[i] for i, w in enumerate(["not", "very", "good"])}
    cell = rnn.RecursiveCell(3, 4, output_size=2, rng=np.random.default_rng(0))
    r = rnn.run_tree(cell, rnn.tree(("not", ("very", "good")), leaf=vec), target=1)
    src = viz.draw_tree(r).source
    for text in ("x(1)", "not", "x(3)", "good", "h(2–3)", "very good", "h(1–3)", "not (very good)"):
        assert f">{text}<" in src, text
    table = re.search(r'"viz.params" \[[^\n]*', src).group(0)
    for sym, name in [("V", "weight_leaf"), ("U", "weight_left"), ("W", "weight_right"), ("b", "bias"),
                      ("W_out", "weight_out"), ("c", "bias_out")]:
        assert table.count(f"<b>{sym}</b>") == 1 and table.count(f">{name}<") == 1


def rows(src):
    return [set(re.findall(r'"?([\w.]+)"?\s*$', g, re.M)) for g in re.findall(r"\{\s*rank=same\n(.*?)\}", src, re.S)]


def test_inputs_sit_in_the_bottom_row_unless_the_tree_is_lopsided():
    cell = rnn.RecursiveCell(1, 2, rng=np.random.default_rng(0))
    balanced = rnn.run_tree(cell, rnn.tree(((0, 1), (2, (3, 4))), leaf=lambda k: np.ones(1)))
    got = rows(viz.draw_tree(balanced).source)
    assert {f"x{n.index}" for n in balanced.leaves} in got and {f"h{n.index}" for n in balanced.leaves} in got
    spec = 0
    for k in range(1, 60):   # a chain: its inputs in one row would make edges cross ~1,700 rows
        spec = (spec, k)
    chain = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: np.ones(1)))
    got = rows(viz.draw_tree(chain).source)
    assert {f"x{n.index}" for n in chain.leaves} not in got
    assert all({f"h{c}" for c in n.children} in got for n in chain.nodes if n.children)   # siblings side by side


def test_the_same_tree_gives_the_same_dot():
    def source():
        cell = rnn.RecursiveCell(2, 3, output_size=2, rng=np.random.default_rng(4))
        r = rnn.run_tree(cell, rnn.tree(((0, 1), (2, (3, 4))), leaf=lambda k: np.full(2, k / 4)), target=1)
        r.loss.backward()
        return viz.draw_tree(r, grad=True).source
    assert source() == source()


def test_gradient_colours_follow_the_norms():
    cell = rnn.RecursiveCell(2, 3, output_size=2, rng=np.random.default_rng(2))
    r = rnn.run_tree(cell, rnn.tree((((0, 1), 2), 3), leaf=lambda k: np.full(2, k / 3)), target=0)
    r.loss.backward()
    src = viz.draw_tree(r, grad=True).source
    norms = [float(np.linalg.norm(s.grad)) for s in r.states]
    fills = {nid: f for nid, f in re.findall(r'"?(h\d+)"? \[[^\n]*fillcolor="(#[0-9A-Fa-f]{6})"', src)}
    lo, hi = int(np.argmin(norms)), int(np.argmax(norms))
    assert norms[lo] < norms[hi] and fills[f"h{lo}"] != fills[f"h{hi}"]
    assert f"{norms[hi]:.4g}" in src and "log scale" in src


def test_folding_keeps_the_top_of_the_tree():
    spec = (((0, 1), (2, 3)), ((4, 5), (6, 7)))
    cell = rnn.RecursiveCell(1, 2, rng=np.random.default_rng(0))
    r = rnn.run_tree(cell, rnn.tree(spec, leaf=lambda k: np.array([float(k)])))
    src = viz.draw_tree(r, collapse=0).source
    edges = visible_edges(src)
    folded = re.findall(r'^\s*"(viz\.subtree\.\d+)" \[', src, re.M)
    assert len(folded) == 2 and not re.search(r'"?x\d+"? \[', src)
    assert sorted(a for a, b, _ in edges if b == f"h{r.root.index}") == sorted(folded)
    assert "leaves 1–4, 7 nodes folded" in src and "leaves 5–8, 7 nodes folded" in src


# --- training ---------------------------------------------------------------------------------------

def test_a_few_adam_steps_reduce_the_loss_on_a_tiny_task():
    # "not" flips its phrase: the label of ("not", w) is the opposite of w's
    vec = {w: np.eye(3)[i] for i, w in enumerate(["good", "bad", "not"])}
    data = [("good", 1), ("bad", 0), (("not", "good"), 0), (("not", "bad"), 1), (("not", ("not", "good")), 1)]
    cell = rnn.RecursiveCell(3, 6, output_size=2, rng=np.random.default_rng(0))
    opt = mg.optim.Adam(cell.parameters(), lr=0.05)

    def total():
        return sum(rnn.run_tree(cell, rnn.tree(p, leaf=vec), target=y).loss for p, y in data)
    before = total().item()
    for _ in range(30):
        opt.zero_grad()
        total().backward()
        opt.step()
    assert total().item() < 0.5 * before


# --- bad input ---------------------------------------------------------------------------------------

VEC = {"not": np.ones(4), "good": np.zeros(4)}


@pytest.fixture
def cell():
    return rnn.RecursiveCell(4, 3, output_size=2, rng=np.random.default_rng(0))


@pytest.mark.parametrize("tree, err, match", [
    (lambda: rnn.tree(("not", "good"), leaf={"not": np.ones(4), "good": np.ones(5)}), ShapeError,
     r"leaf 2 \('good'\) has shape \(5,\); the cell expects input_size=4: \(B, 4\) or \(4,\)"),
    (lambda: rnn.tree(("not", "good"), leaf={"not": np.ones((2, 4)), "good": np.ones((3, 4))}), ShapeError,
     r"leaf 2 \('good'\) has batch 3 \(shape \(3, 4\)\) but leaf 1 \('not'\) has 2"),
    (lambda: rnn.tree(("not", "good", "not"), leaf=VEC), ValueError,
     r"the node h\(1–3\) \(Tree\(not good not\), at depth 0\) has 3 children; RecursiveCell combines exactly 2"),
    (lambda: rnn.tree((("not",), "good"), leaf=VEC), ValueError,
     r"the node h\(1\) \(Tree\(not\), at depth 1\) has 1 child; RecursiveCell combines exactly 2"),
    (lambda: rnn.tree(("not", "good"), leaf={"not": "abc", "good": np.ones(4)}), TypeError,
     r"leaf 1 \('not'\) must hold an array of shape \(B, 4\) or \(4,\), got a str"),
    (lambda: rnn.tree((0, 1), leaf=lambda k: [[1.0, 2.0], [1.0]]), TypeError,
     r"leaf 1 must hold an array.*does not convert"),
    (lambda: rnn.tree((0, 1), leaf=lambda k: mg.tensor(np.ones(4, np.float32))), TypeError,
     r"leaf 1 has dtype float32, the cell's parameters are float64"),
    (lambda: (("not", "good")), TypeError, r"tree must be an rnn.Tree — rnn.tree\(...\) builds one"),
])
def test_bad_trees_are_named_with_their_shapes(cell, tree, err, match):
    with pytest.raises(err, match=r"run_tree\(RecursiveCell\): " + match):
        rnn.run_tree(cell, tree())


def test_a_subtree_shared_by_two_nodes_is_refused(cell):
    part = rnn.tree(("not", "good"), leaf=VEC)
    with pytest.raises(ValueError, match=r"run_tree\(RecursiveCell\): one subtree \(of Tree\(not good\)\) is a "
                                         r"child of two nodes"):
        rnn.run_tree(cell, rnn.Tree(part, part))


@pytest.mark.parametrize("target, err, match", [
    (1.0, TypeError, r"target must be integer class indices in \[0, 2\).*got dtype float64"),
    (True, TypeError, r"target must be integer class indices.*got dtype bool"),
    ("1", TypeError, r"target must be integer class indices.*got a str"),
    (np.array([0, 1]), ShapeError, r"target has shape \(2,\); the leaves hold a batch of 1"),
    (2, ValueError, r"target holds 2; class indices lie in \[0, 2\)"),
    (-1, ValueError, r"target holds -1"),
])
def test_bad_targets_are_named_with_their_shapes(cell, target, err, match):
    with pytest.raises(err, match=r"run_tree\(RecursiveCell\): " + match):
        rnn.run_tree(cell, rnn.tree(("not", "good"), leaf=VEC), target=target)


def test_a_target_for_a_net_without_a_loss_says_how_to_get_one():
    with pytest.raises(TypeError, match=r"run_tree\(RecursiveCell\): a target was given but RecursiveCell"
                                        r"\(input_size=4, hidden_size=3\) has no loss \(give it output_size"):
        rnn.run_tree(rnn.RecursiveCell(4, 3), rnn.tree(("not", "good"), leaf=VEC), target=1)


def test_a_cell_that_is_not_a_tree_cell_is_refused():
    with pytest.raises(TypeError, match=r"run_tree: cell must be an rnn.TreeCell .*got ElmanCell"):
        rnn.run_tree(rnn.ElmanCell(4, 3), rnn.tree(("not", "good"), leaf=VEC))


def test_a_custom_cell_whose_state_has_the_wrong_shape_is_named():
    class Wide(SumCell):
        def node(self, children):
            return mg.concatenate(children, axis=1)
    with pytest.raises(ShapeError, match=r"run_tree\(Wide\): Wide.node returned shape \(1, 6\) for h\(1–2\); "
                                         r"a state is \(B, hidden_size\) = \(1, 3\)"):
        rnn.run_tree(Wide(4, 3), rnn.tree(("not", "good"), leaf=VEC))


@pytest.mark.parametrize("build, err, match", [
    (lambda: rnn.Tree(), ValueError, r"Tree: a leaf needs its input, Tree\(x=...\)"),
    (lambda: rnn.Tree(rnn.Tree(x=1.0), x=1.0), ValueError, r"Tree: a node holds children or an input x, not both"),
    (lambda: rnn.Tree(rnn.Tree(x=1.0), "good"), TypeError, r"Tree: child 1 is a str, expected a Tree"),
    (lambda: rnn.tree(("not", ("very", ())), leaf=len), ValueError, r"tree: the empty tuple at position \(1, 1\)"),
    (lambda: rnn.tree(("not", "bad"), leaf=VEC), KeyError, r"tree: the leaf 'bad' at position \(1,\) has no input"),
    (lambda: rnn.tree(("not",), leaf=3), TypeError, r"tree: leaf must be a function or a mapping"),
    (lambda: rnn.RecursiveCell(4, 3, arity=0), ValueError, r"RecursiveCell: arity must be a positive integer"),
    (lambda: rnn.RecursiveCell(4, 3, output_size=0), ValueError, r"RecursiveCell: output_size must be"),
])
def test_bad_trees_and_cells_are_refused_when_built(build, err, match):
    with pytest.raises(err, match=match):
        build()


def test_draw_tree_refuses_what_it_cannot_draw(cell):
    r = rnn.run_tree(cell, rnn.tree(("not", "good"), leaf=VEC), target=1)
    with pytest.raises(ValueError, match=r"draw_tree\(grad=True\): no state gradients.*backward"):
        viz.draw_tree(r, grad=True)
    with pytest.raises(TypeError, match=r"draw_tree: a RecursiveCell is drawn over a tree"):
        viz.draw_tree(cell)
    with pytest.raises(TypeError, match=r"draw_tree: expected an rnn.TreeResult"):
        viz.draw_tree(rnn.ElmanCell(2, 3))
    with pytest.raises(ValueError, match=r"draw_tree: collapse must be a depth"):
        viz.draw_tree(r, collapse=-1)


def test_long_phrases_show_their_first_and_last_words():
    t = rnn.tree(("but", (("the", "actors"), ("were", "great"))), leaf=lambda w: np.ones(1))
    assert t.phrase() == "but ((the actors) (were great))"
    assert t.phrase(limit=20) == "but … great"   # cut whole, never a cut child inside a short text
