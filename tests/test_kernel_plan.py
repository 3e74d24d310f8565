"""The generator's plans, read without compiling: what runs before the loop, what per step, what is stored.

A plan decides the kernel's speed (one GEMM over all T*B rows for every input product, one product
per step for the state's) and its memory (which values the backward reads back).  These tests pin
those decisions for the built-in cells and for custom steps that exercise each pass.
"""
import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.kernels import UnsupportedCellError, kernel_source
from rnn.kernels.passes import make_plan
from tests.rnn_helpers import LeakyCell


def plan_of(cell, batch=2):
    return make_plan(cell.rolled(batch))


def ops(plan, ids):
    return [plan.nodes[i].op for i in ids]


def stored(plan, how):
    return sorted(plan.nodes[i].op for i, s in plan.stored.items() if s == how)


@pytest.mark.parametrize("cls, gates, outputs", [
    (rnn.ElmanCell, 1, []),
    (rnn.GRUCell, 3, ["sigmoid", "sigmoid", "tanh"]),
    (rnn.LSTMCell, 4, ["sigmoid", "sigmoid", "sigmoid", "tanh", "tanh"]),
])
def test_builtin_cells_hoist_the_input_product_and_keep_one_product_per_step(cls, gates, outputs):
    I, H, B = 3, 5, 2
    plan = plan_of(cls(I, H), B)
    # every gate's input product is grouped into one GEMM run over all T*B rows before the loop
    assert ops(plan, plan.hoist) == ["matmul"] and plan.nodes[plan.hoist[0]].shape == (B, gates * H)
    # and so is the state's: one (B, H) @ (H, gates*H) product per step
    assert len(plan.rec) == 1 and plan.nodes[plan.rec[0]].shape == (B, gates * H)
    # the weights are transposed once per call by the engine, so their gradients flow back through it
    assert ops(plan, plan.pre) == ["transpose", "transpose"]
    # one fused element-wise loop, right after the per-step product, one column block per gate
    loops = [ph for ph in plan.phases if ph.nodes]
    assert len(loops) == 1 and loops[0].matmuls == plan.rec and loops[0].width == H
    # stored: the new states, and the activations whose derivative reads their output
    assert [s for s, _, _ in plan.states] == (["h", "c"] if cls is rnn.LSTMCell else ["h"])
    assert len([s for s in plan.stored.values() if s == "state"]) == len(plan.states)
    assert stored(plan, "output") == sorted(outputs)


def test_a_product_of_a_computed_value_splits_the_step_into_phases():
    class TwoLayer(rnn.Cell):
        """h' = tanh(tanh(x U + h W) V): V's product needs the first tanh in full, so two loops."""

        def __init__(self, I, H):
            super().__init__(I, H)
            rng = np.random.default_rng(0)
            self.U, self.W, self.V = (Parameter(rng.standard_normal(s) * 0.3) for s in [(I, H), (H, H), (H, H)])

        def step(self, x, h):
            return ((x @ self.U + h @ self.W).tanh() @ self.V).tanh()

    plan = plan_of(TwoLayer(3, 4))
    loops = [ph for ph in plan.phases if ph.nodes]
    assert len(loops) == 2 and len(plan.rec) == 2
    first, second = loops
    assert ops(plan, first.nodes)[-1] == "tanh" and ops(plan, second.nodes)[-1] == "tanh"
    assert ops(plan, second.matmuls) == ["matmul"] and second.matmuls[0] not in first.matmuls
    # the first tanh crosses into the next phase's product, so it is stored as a value
    inner = next(i for i in first.nodes if plan.nodes[i].op == "tanh")
    assert plan.stored.get(inner) in ("value", "output")


def test_a_concatenated_input_and_state_is_split_so_the_input_half_is_hoisted():
    class ConcatCell(rnn.Cell):
        def __init__(self, I, H):
            super().__init__(I, H)
            self.W = Parameter(np.random.default_rng(1).standard_normal((H, I + H)) * 0.3)

        def step(self, x, h):
            return (mg.concatenate([x, h], axis=-1) @ self.W.T).tanh()

    plan = plan_of(ConcatCell(3, 4))
    assert len(plan.hoist) == 1 and len(plan.rec) == 1        # x @ W[:, :I].T before the loop, h's per step
    assert "concatenate" not in ops(plan, [i for ph in plan.phases for i in ph.nodes])


def test_leaky_cell_computes_its_rate_once_per_call():
    plan = plan_of(LeakyCell(3, 4))
    # sigmoid(leak) reads parameters only: evaluated by the engine before the loop, not per step
    assert "sigmoid" in ops(plan, plan.pre)
    assert "sigmoid" not in ops(plan, [i for ph in plan.phases for i in ph.nodes])


def test_a_plan_is_the_same_for_every_batch_size_above_one():
    a, b = plan_of(rnn.LSTMCell(3, 5), 2), plan_of(rnn.LSTMCell(3, 5), 7)
    assert (a.hoist, a.rec, a.pre, a.stored) == (b.hoist, b.rec, b.pre, b.stored)


def test_kernel_source_needs_no_compiler_and_leaves_the_cache_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_CACHE", str(tmp_path))
    src = kernel_source(rnn.LSTMCell(3, 5), batch=4, dtype="float32")
    compile(src, "<kernel>", "exec")                     # valid Python as written
    assert "sigmoid_f32 as _sigmoid" in src           # float32's scalar helpers, picked by the dtype asked for
    assert "sigmoid_f64 as _sigmoid" in kernel_source(rnn.LSTMCell(3, 5), batch=4)
    assert list(tmp_path.iterdir()) == []


def test_kernel_source_names_what_it_cannot_compile():
    class MaxCell(rnn.Cell):
        def __init__(self, I, H):
            super().__init__(I, H)
            self.W = Parameter(np.ones((H, I + H)))

        def step(self, x, h):
            z = mg.concatenate([x, h], axis=-1) @ self.W.T
            return z - z[::-1]   # the batch rows in reverse: no kernel indexes the batch axis

    with pytest.raises(UnsupportedCellError, match=r"op 'getitem' at node n\d+"):
        kernel_source(MaxCell(2, 3), batch=2)
