"""The drawings of real models: hostile parameter names, reproducible DOT across processes,
long sequences, truncated-BPTT windows, and the layout hints that keep the time axis one row."""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import minigrad as mg
import rnn
import viz
from minigrad.nn import Parameter

HOSTILE = 'W"}{<x>&\n</td><script>alert(1)</script>\\N'


class HostileCell(rnn.Cell):
    """An Elman step whose recurrent weight has a name a user could type but DOT and SVG would choke on."""

    def __init__(self):
        super().__init__(2, 3)
        rng = np.random.default_rng(0)
        self.U = Parameter(rng.uniform(-0.5, 0.5, (3, 2)))
        setattr(self, HOSTILE, Parameter(rng.uniform(-0.5, 0.5, (3, 3))))

    def step(self, x, h):
        return (x @ self.U.T + h @ getattr(self, HOSTILE).T).tanh()


def svg_texts(path):
    root = ET.parse(path).getroot()
    return root, "\n".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("draw", [lambda c: viz.draw_rolled(c, detail="ops"),
                                  lambda c: viz.draw_unrolled(c, steps=2, detail="block")])
def test_hostile_parameter_name_is_shown_literally_and_injects_nothing(tmp_path, draw):
    d = draw(HostileCell())
    path = viz.render(d, tmp_path / "hostile.svg")   # dot itself parses the DOT: a broken quote would fail here
    root, text = svg_texts(path)
    # The newline in the name becomes a line break, so the two halves are separate text lines.
    assert 'W"}{<x>&' in text and "</td><script>alert(1)</script>\\N" in text
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    # \N would expand to the node's id in a quoted DOT label; it must stay literal text.
    assert "\\N" in text


_DOT_SCRIPT = """
import numpy as np, minigrad as mg, rnn, viz
cell = rnn.LSTMCell(2, 3, rng=np.random.default_rng(5))
r = rnn.run(cell, mg.randn(4, 1, 2, rng=np.random.default_rng(6)), backend="graph")
loss = r.outputs.sum(); loss.backward()
print(viz.draw_rolled(cell, detail="ops").source)
print(viz.draw_unrolled(r, detail="ops", grad=True, loss=loss, collapse=1).source)
"""


def test_dot_is_identical_across_processes_with_different_hash_seeds():
    # Set iteration order changes with PYTHONHASHSEED; the DOT must not depend on it (nor on id()).
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-c", _DOT_SCRIPT], env=env, capture_output=True,
                                   text=True, check=True, timeout=120).stdout)
    assert outs[0] == outs[1] and "cluster_t3" in outs[0]


def test_a_thousand_steps_collapsed_draw_four_steps_and_name_the_elided_count():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    r = rnn.run(cell, mg.randn(1000, 1, 2, rng=np.random.default_rng(1)), backend="graph")
    r.outputs[-1].sum().backward()
    src = viz.draw_unrolled(r, collapse=2, grad=True).source
    assert re.findall(r"subgraph cluster_(t\d+)", src) == ["t0", "t1", "t998", "t999"]
    assert "… 996 steps …" in src and "steps 3 to 998" in src
    # The hidden steps' gradient range is reported on the elision node, so the vanishing is not hidden too.
    assert re.search(r"‖∂L/∂state‖ [^<]+ to [^<]+", src)


def test_truncated_bptt_window_counts_steps_from_its_start():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    xs = mg.randn(6, 1, 2, rng=np.random.default_rng(0))
    windows = list(rnn.tbptt(cell, xs, lambda out, steps: out.sum(), k1=3, backend="graph"))
    src = viz.draw_unrolled(windows[1].result).source
    assert "<b>h(3)</b>" in src and "<b>x(4)</b>" in src and "<b>h(6)</b>" in src
    assert "<b>x(1)</b>" not in src


@pytest.mark.parametrize("detail", ["block", "ops"])
def test_each_step_starts_after_the_previous_state_so_steps_form_one_row(detail):
    # Without these constraints Graphviz ranks a step's source ops (x, a parameter's transpose) beside
    # the previous step and stacks the clusters in a staircase.
    src = viz.draw_unrolled(rnn.LSTMCell(2, 3, rng=np.random.default_rng(0)), steps=3, detail=detail).source
    chained = re.findall(r'^\s*"?([\w.]+)"? \[[^\n]*group=chain', src, re.M)
    assert "viz.block.t1" in chained if detail == "block" else len(chained) >= 4
    if detail == "block":
        assert re.search(r'rank=same\s+"viz\.block\.t2"\s+"t2\.n0"', src)  # x(t) under its block
    else:
        assert re.search(r'"t1\.n26" -> "t2\.n0" \[style=invis', src)        # h(t) before x(t+1)


def _layout(drawing):
    """{node or cluster name: (x, y) of a node, or the (x0, y0, x1, y1) box of a cluster}, from dot."""
    import json
    out = {}
    for o in json.loads(drawing.pipe(format="json"))["objects"]:
        if "pos" in o:
            out[o["name"]] = tuple(float(v) for v in o["pos"].split(","))
        elif "bb" in o:
            out[o["name"]] = tuple(float(v) for v in o["bb"].split(","))
    return out


def _one_row(at, T):
    boxes = [at[f"cluster_t{t}"] for t in range(T)]
    for a, b in zip(boxes, boxes[1:]):
        assert a[2] <= b[0]                              # left to right, not overlapping
        assert a[1] < b[3] and b[1] < a[3]               # and level: no staircase


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_a_bidirectional_net_unrolls_into_two_rows_of_opposite_arrows():
    T = 4
    bi = rnn.Bidirectional(rnn.GRUCell(3, 4, rng=np.random.default_rng(0)),
                           rnn.GRUCell(3, 4, rng=np.random.default_rng(1)))
    d = viz.draw_unrolled(bi, steps=T)
    at, g = _layout(d), rnn.unfold(bi.rolled(), T)
    _one_row(at, T)
    back = next(lp for lp in g.rolled.loops if lp.delay < 0)
    fwd = [at[f"viz.block.t{t}.0"] for t in range(T)]
    bwd = [at[f"viz.block.t{t}.1"] for t in range(T)]
    level = lambda ps: max(p[1] for p in ps) - min(p[1] for p in ps) < 5  # noqa: E731
    assert level(fwd) and level(bwd)                                                      # two straight rows
    assert bwd[0][1] < fwd[0][1]                                                         # the backward one below
    for t in range(T):
        h_b, after = at[g.node_at(back.output, t)], at[g.node_at(back.input, t)]       # g(t), and g(t+1) it reads
        assert h_b[0] < bwd[t][0] < after[0]                                            # g(t) ← block ← g(t+1)
    # and o(t) reads both chains
    for t in range(T):
        o = g.node_at(g.rolled.output, t)
        for lp in g.rolled.loops:
            s = g.node_at(lp.output, t)
            assert re.search(rf'"{s}" -> "{o}"|"{o}" -> "{s}" \[dir=back', d.source)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_a_deep_net_unrolls_with_each_layer_after_the_one_below_and_the_steps_in_one_row():
    T = 3
    deep = rnn.Stacked([rnn.LSTMCell(3, 4, rng=np.random.default_rng(0)), rnn.ElmanCell(4, 5, rng=np.random.default_rng(1))])
    at = _layout(viz.draw_unrolled(deep, steps=T))
    _one_row(at, T)
    for t in range(T):
        assert at[f"viz.block.t{t}.0"][0] < at[f"viz.block.t{t}.1"][0]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("feed", ["teacher", "output"])
def test_a_network_s_steps_stack_x_h_o_and_l_upward_as_the_book_does(feed):
    # Fig. 10.3: x(t) at the bottom, then h(t), o(t), L(t), with y(t) beside L(t); the steps in one row.
    T, rng = 3, np.random.default_rng(0)
    cell = rnn.OutputRecurrentCell(3, 4, 2, rng=rng)
    res = rnn.run(cell, rng.normal(size=(T, 2, 3)), targets=rng.normal(size=(T, 2, 2)), feed=feed)
    at, g = _layout(viz.draw_unrolled(res)), res.graph
    _one_row(at, T)
    h = g.rolled.loops[0].output
    for t in range(T):
        y = {name: at[g.node_at(nid, t)][1] for name, nid in
             (("x", g.rolled.x), ("h", h), ("o", g.rolled.output), ("L", g.rolled.loss), ("y", g.rolled.target))}
        assert y["x"] < y["h"] < y["o"] < y["L"], (t, y)            # dot's y grows upward
        assert y["y"] > y["h"]                                       # the target up by its loss
