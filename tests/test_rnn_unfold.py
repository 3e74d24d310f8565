"""The rolled graph (a cycle through delays) and its unfolding (a DAG of T steps sharing parameters)."""
import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad.graph import CycleError, Edge, Graph, Node
from rnn.rolled import as_tuple, check_delays
from rnn_helpers import CELL_KINDS, make_cell, python_loop, random_state


def _reaches(g, src, dst):
    children, seen, stack = g.children(), set(), [src]
    while stack:
        n = stack.pop()
        if n == dst:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(children[n])
    return False


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_rolled_graph_cycles_only_through_delays(kind):
    cell = make_cell(kind, 3, 2)
    g = cell.rolled(batch=2)
    assert isinstance(g, rnn.RolledGraph)
    assert g.find_cycle() is None                     # the data edges alone: a DAG
    assert len(g.loops) == len(as_tuple(cell.initial_state(1)))
    for lp in g.loops:                                # each delay closes a cycle: s(t-1) -> ... -> s(t) -> delay
        assert lp.delay == 1 and g.nodes[lp.input].role == g.nodes[lp.output].role == "state"
        assert _reaches(g, lp.input, lp.output) or kind == "leaky"


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("T", [1, 2, 5])
def test_unfold_copies_each_step_and_shares_parameters(kind, T):
    cell = make_cell(kind, 3, 2)
    rolled = cell.rolled(batch=2)
    g = rnn.unfold(rolled, T)
    params = [n.id for n in rolled.nodes.values() if n.role == "parameter"]
    n_states = len(rolled.loops)
    per_step = len(rolled.nodes) - len(params) - n_states
    assert len(params) == len(cell.parameters())
    # Step 0 also holds the initial-state inputs; later steps read the previous step's state outputs instead.
    assert len(g.nodes) == T * per_step + n_states + len(params)
    for t in range(T):
        assert sum(g.step_of.get(n) == t for n in g.nodes) == per_step + (n_states if t == 0 else 0)
    assert sorted(n.id for n in g.nodes.values() if n.role == "parameter") == sorted(params)
    for p in params:
        assert {g.step_of[e.dst] for e in g.edges if e.src == p} == set(range(T)), p
    for t in range(1, T):  # the delay, cut: step t reads the state step t-1 made
        for lp in rolled.loops:
            readers = [e.dst for e in rolled.edges if e.src == lp.input]
            assert all(g.node_at(lp.output, t - 1) in g.inputs_of(g.node_at(r, t)) for r in readers)
    assert g.find_cycle() is None
    order = g.topological_order()
    pos = {nid: i for i, nid in enumerate(order)}
    assert len(order) == len(g.nodes)
    assert all(pos[e.src] < pos[e.dst] for e in g.edges)


@pytest.mark.parametrize("backend", ["graph", "numba"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_evaluating_the_unfolding_equals_a_python_loop(kind, backend):
    rng = np.random.default_rng(5)
    cell = make_cell(kind, 3, 4, seed=1)
    xs = rng.normal(size=(6, 2, 3))
    state0 = random_state(cell, 2, rng)
    res = rnn.run(cell, xs, state0, backend=backend)
    assert res.backend == backend
    want_out, want_state = python_loop(cell, xs, state0)
    np.testing.assert_allclose(res.outputs.data, want_out.data, rtol=1e-13, atol=1e-13)
    for a, b in zip(as_tuple(res.state), as_tuple(want_state)):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-13, atol=1e-13)


def _graph(edges):
    nodes = [Node("x", "leaf", "input", (1, 2), "float64", "x"),
             Node("a", "add", "op", (1, 2), "float64", "pre"),
             Node("h", "tanh", "op", (1, 2), "float64", "h")]
    return Graph(nodes, edges)


def test_a_data_cycle_without_delay_is_rejected_by_name():
    g = _graph([Edge("x", "a", 0), Edge("h", "a", 1), Edge("a", "h", 0)])
    with pytest.raises(CycleError) as err:
        check_delays(g)
    assert "pre" in str(err.value) and "h" in str(err.value) and "delay" in str(err.value)


def test_the_same_loop_through_a_delay_is_accepted():
    nodes = [Node("x", "leaf", "input", (1, 2), "float64", "x"), Node("s", "leaf", "state", (1, 2), "float64", "h"),
             Node("a", "add", "op", (1, 2), "float64", "pre"), Node("h", "tanh", "state", (1, 2), "float64", "h")]
    g = rnn.RolledGraph(nodes, [Edge("x", "a", 0), Edge("s", "a", 1), Edge("a", "h", 0)], x="x",
                        loops=[rnn.Loop("h", "s", "h")], output="h")
    assert check_delays(g) is g
    u = rnn.unfold(g, 3)
    assert u.inputs_of(u.node_at("a", 2)) == [u.node_at("x", 2), u.node_at("h", 1)]


@pytest.mark.parametrize("T", [0, -1, 2.0, None])
def test_unfold_needs_a_positive_integer_T(T):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        rnn.unfold(rnn.ElmanCell(2, 2).rolled(), T)


def test_step_that_does_not_keep_the_state_shape_is_rejected():
    class Grows(rnn.Cell):
        def __init__(self):
            super().__init__(2, 3)
            self.w = mg.nn.Parameter(np.ones((2, 4)))

        def step(self, x, h):
            return (x @ self.w).tanh()  # (B, 4): not the (B, 3) it was given

    with pytest.raises(ValueError, match=r"Grows.*shape \(1, 4\).*\(1, 3\)"):
        Grows().rolled()
