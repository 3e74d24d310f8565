"""The drawings, checked on their DOT source (no rendering), plus one real SVG render."""
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import minigrad as mg
import rnn
import viz

HOSTILE = 'a"b}{<x>&\n</td><script>alert(1)</script>\\'


def cell_of(kind, seed=0):
    return {"elman": rnn.ElmanCell, "lstm": rnn.LSTMCell, "gru": rnn.GRUCell}[kind](2, 3, rng=np.random.default_rng(seed))


def clusters(source):
    return re.findall(r"subgraph cluster_(t\d+)", source)


def out_edges(source, node_id):
    return re.findall(rf'^\s*"?{re.escape(node_id)}"?\s*->', source, re.M)


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("detail", ["block", "ops"])
@pytest.mark.parametrize("T", [1, 4])
def test_params_as_nodes_are_drawn_once_with_an_edge_to_every_step(kind, detail, T):
    cell = cell_of(kind)
    src = viz.draw_unrolled(cell, steps=T, detail=detail, params="nodes").source
    assert clusters(src) == [f"t{t}" for t in range(T)]
    params = cell.rolled().params
    assert len(params) == 4
    for pid in params:
        assert len(re.findall(rf'^\s*"?{pid}"? \[', src, re.M)) == 1  # drawn once
        assert len(out_edges(src, pid)) == T                        # and feeding every step
    assert "viz.delay" not in src


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("detail", ["block", "ops"])
def test_by_default_parameters_are_labels_and_one_table(kind, detail):
    cell = cell_of(kind)
    T = 3
    src = viz.draw_unrolled(cell, steps=T, detail=detail).source
    for pid in cell.rolled().params:
        assert not re.search(rf'^\s*"?{pid}"? \[', src, re.M) and not out_edges(src, pid)  # no node, no edge
    table = re.search(r'"viz.params" \[[^\n]*', src).group(0)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert table.count(f">{name}<") == 1
    assert "<b>U</b>" in table and "<b>W</b>" in table
    if detail == "block":  # the book's letters on the edges they act on, at every step
        assert len(re.findall(r'"t\d+\.n\d+" -> "viz\.block\.t\d+" \[[^\]]*label=<U>', src)) == T
        assert len(re.findall(r'-> "viz\.block\.t\d+" \[[^\]]*label=<W>', src)) == T
    else:  # the products with transposed weights are single ops, x·Uᵀ and h·Wᵀ, and no transpose is drawn
        assert src.count("x·Uᵀ") == T and src.count("h·Wᵀ") == T and ">transpose<" not in src


@pytest.mark.parametrize("kind, n_states", [("elman", 1), ("lstm", 2)])
@pytest.mark.parametrize("detail", ["block", "ops"])
def test_rolled_has_one_delay_square_per_state_on_its_feedback_edge(kind, n_states, detail):
    src = viz.draw_rolled(cell_of(kind), detail=detail).source
    delays = re.findall(r'^\s*"(viz\.delay\.[^"]+)" \[', src, re.M)
    assert len(delays) == n_states
    for d in delays:
        assert "fillcolor=black" in re.search(rf'"{re.escape(d)}" \[[^\]]*\]', src).group(0)
        assert len(out_edges(src, d)) == 1 and re.search(rf'-> "{re.escape(d)}"', src)
    assert not clusters(src)


def test_collapse_elides_the_middle_steps():
    cell = cell_of("elman")
    r = rnn.run(cell, mg.randn(100, 1, 2, rng=np.random.default_rng(0)), backend="graph")
    src = viz.draw_unrolled(r, collapse=3).source
    assert clusters(src) == ["t0", "t1", "t2", "t97", "t98", "t99"]
    assert "… 94 steps …" in src
    assert len(re.findall(r"<b>x\(\d+\)</b>", src)) == 6


def test_collapse_larger_than_half_shows_everything():
    src = viz.draw_unrolled(cell_of("gru"), steps=5, collapse=3).source
    assert len(clusters(src)) == 5 and "steps …" not in src


def _luminance(hexcolor):
    r, g, b = (int(hexcolor[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_gradient_colours_follow_the_norms():
    cell = rnn.ElmanCell(2, 4, rng=np.random.default_rng(3))
    cell.weight_hh.data *= 0.3  # contracting: ‖∂L/∂h(t)‖ shrinks going back in time
    r = rnn.run(cell, mg.randn(8, 1, 2, rng=np.random.default_rng(1)), backend="graph")
    r.outputs[-1].sum().backward()
    src = viz.draw_unrolled(r, grad=True).source
    norms = [float(np.linalg.norm(s[0].grad)) for s in r.states]
    fills = []
    for ids in r.graph.state_out:
        attrs = re.search(rf'"{re.escape(ids[0])}" \[([^\n]*)\]', src).group(1)
        fills.append(re.search(r'fillcolor="(#[0-9A-Fa-f]{6})"', attrs).group(1))
    assert norms == sorted(norms) and norms[0] < norms[-1] / 10
    lum = [_luminance(f) for f in fills]  # viridis brightens monotonically with the norm
    assert lum == sorted(lum) and lum[0] < lum[-1]
    assert "log scale" in src
    for n in (norms[0], norms[-1]):
        assert f"{n:.3g}"[:4] in src or f"{n:.2e}"[:4] in src


def test_grad_true_without_backward_is_a_clear_error():
    r = rnn.run(cell_of("elman"), mg.randn(3, 1, 2), backend="graph")
    with pytest.raises(ValueError, match="backward"):
        viz.draw_unrolled(r, grad=True)


def test_truncated_bptt_cut_is_dashed():
    cell = cell_of("elman")
    xs = mg.randn(6, 1, 2, rng=np.random.default_rng(0))
    windows = list(rnn.tbptt(cell, xs, lambda out, steps: out.sum(), k1=3, backend="graph"))
    first, second = (viz.draw_unrolled(w.result).source for w in windows)
    assert "dashed" not in first.split("legend")[0] and re.search(r"->[^\n]*style=dashed", second)


def test_same_model_gives_identical_dot():
    def source():
        cell = cell_of("lstm", seed=7)
        r = rnn.run(cell, mg.randn(4, 2, 2, rng=np.random.default_rng(2)), backend="graph")
        r.outputs.sum().backward()
        return (viz.draw_rolled(cell, detail="ops").source + viz.draw_unrolled(r, grad=True, detail="ops").source
                + viz.draw_graph(r.outputs.sum()).source)
    assert source() == source()


def test_draw_graph_shows_value_and_grad_of_scalars_and_roles():
    x = mg.tensor(2.0, requires_grad=True, name="x")
    w = mg.nn.Parameter(np.float64(-3.0), name="w")
    y = (x * w + 1).tanh()
    y.name = "y"
    y.backward()
    src = viz.draw_graph(y).source
    assert re.search(r"data 2(\.0+)?\b", src) or "= 2" in src
    shown = {float(g) for g in re.findall(r"grad (-?[\d.]+(?:e-?\d+)?)", src)}
    for t in (x, w):
        assert any(np.isclose(s, t.grad.item(), rtol=1e-2) for s in shown)
    fills = set(re.findall(r'fillcolor="(#[0-9A-Fa-f]{6})"', src))
    assert {viz.STYLE["roles"][r]["fillcolor"] for r in ("parameter", "input")} <= fills


dot_missing = shutil.which("dot") is None


def test_hostile_names_are_escaped_in_the_dot_source():
    """Checked on the DOT text itself, so it runs where Graphviz is not installed too."""
    x = mg.tensor(1.5, requires_grad=True, name=HOSTILE)
    y = (x * 2).sum()
    y.name = HOSTILE
    src = viz.draw_graph(y).source
    labels = re.findall(r"label=<(.*)> ", src)
    assert len(labels) >= 2
    for label in labels:
        # Inside an HTML-like label only our own markup may appear: the name's <, >, &, " are entities...
        assert "<script>" not in label and "<x>" not in label and '"b' not in label
        assert label.count("<b>") == label.count("</b>")
    # ...its newline a line break, and its backslash doubled so Graphviz shows one literally.
    named = [lab for lab in labels if "a&quot;b}{&lt;x&gt;&amp;" in lab]
    assert len(named) == 2 and all('<br align="center"/>' in lab and "&lt;/script&gt;\\\\" in lab
                                   for lab in named)


@pytest.mark.skipif(dot_missing, reason="Graphviz's dot is not installed")
def test_hostile_names_are_escaped(tmp_path):
    x = mg.tensor(1.5, requires_grad=True, name=HOSTILE)
    y = (x * 2).sum()
    y.name = HOSTILE
    path = viz.render(viz.draw_graph(y), tmp_path / "hostile.svg")
    root = ET.parse(path).getroot()  # the DOT parsed and the SVG is well-formed
    texts = [t.text or "" for t in root.iter() if t.tag.endswith("text")]
    joined = "\n".join(texts)
    for fragment in ['a"b}{<x>&', "</td><script>alert(1)</script>\\"]:
        assert fragment in joined
    assert not [e for e in root.iter() if e.tag.endswith("script")]


@pytest.mark.skipif(dot_missing, reason="Graphviz's dot is not installed")
def test_renders_valid_svg(tmp_path):
    cell = cell_of("lstm")
    for name, d in [("rolled", viz.draw_rolled(cell)), ("unrolled", viz.draw_unrolled(cell, steps=3, detail="ops"))]:
        path = viz.render(d, tmp_path / f"{name}.svg")
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert (tmp_path / f"{name}.gv").read_text() == d.source


def test_missing_dot_names_the_package_and_keeps_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    d = viz.draw_rolled(cell_of("elman"))
    with pytest.raises(viz.GraphvizNotFound, match="apt-get install graphviz") as e:
        viz.render(d, tmp_path / "out" / "rolled.svg")
    saved = tmp_path / "out" / "rolled.gv"
    assert saved.read_text() == d.source and str(saved) in str(e.value)


def test_jupyter_display_is_svg():
    bundle = viz.draw_rolled(cell_of("elman"))._repr_mimebundle_()
    assert "image/svg+xml" in bundle or dot_missing


def test_loss_on_a_numba_run_is_refused_clearly():
    r = rnn.run(cell_of("elman"), mg.randn(3, 1, 2), backend="numba")
    loss = r.outputs.sum()
    with pytest.raises(ValueError, match="backend='graph'"):
        viz.draw_unrolled(r, loss=loss)


def test_loss_node_is_fed_by_the_states_it_reads():
    r = rnn.run(cell_of("elman"), mg.randn(5, 1, 2), backend="graph")
    loss = (r.states[1][0] + r.states[4][0]).sum()  # outputs would be the stack of every step
    src = viz.draw_unrolled(r, loss=loss).source
    feeding = re.findall(r'^\s*"?([\w.]+)"? -> "viz\.loss"', src, re.M)
    assert feeding == [r.graph.state_out[1][0], r.graph.state_out[4][0]]


def test_engine_graph_legend_speaks_of_no_time_steps():
    x = mg.tensor(2.0, requires_grad=True, name="x")
    src = viz.draw_graph((x * x).sum()).source
    legend = re.search(r'"viz\.legend" \[label=<(.*)> margin', src).group(1)
    assert ">input<" in legend and "x(t)" not in legend
    assert "input x(t)" in viz.draw_unrolled(cell_of("elman"), steps=2).source


# --- pictures that read like the book ------------------------------------------------------------

def test_the_lstm_ops_view_names_its_gates_and_draws_no_transpose():
    src = viz.draw_rolled(cell_of("lstm"), detail="ops").source
    for gate in ("i", "f", "g", "o"):
        assert len(re.findall(rf"label=<<b>{gate}</b>", src)) == 1, gate
    assert ">transpose<" not in src and "x·Uᵀ" in src and "h·Wᵀ" in src


@pytest.mark.parametrize("kind, ops", [("elman", ["tanh"]), ("lstm", ["mul", "add"]), ("gru", ["add"])])
def test_every_state_shows_the_op_that_makes_it(kind, ops):
    src = viz.draw_unrolled(cell_of(kind), steps=2, detail="ops").source
    for t in (1, 2):
        for state, op in zip(("h", "c"), ops):
            assert re.search(rf"<b>{state}\({t}\)</b><br/><font point-size=\"10\">{op}</font>", src), (state, t)


def test_the_legend_names_only_what_is_drawn():
    elman = viz.draw_unrolled(cell_of("elman"), steps=2).source
    legend = re.search(r'"viz.legend" \[[^\n]*', elman).group(0)
    assert "state h(t)<" in legend and "c(t)" not in legend and ">op<" not in legend   # a block is no op
    lstm = re.search(r'"viz.legend" \[[^\n]*', viz.draw_rolled(cell_of("lstm")).source).group(0)
    assert "state h(t), c(t)" in lstm and "delay" in lstm and "target" not in lstm


def test_the_colour_scale_spans_whole_decades_and_states_the_ratio():
    cell = rnn.ElmanCell(2, 4, rng=np.random.default_rng(3))
    r = rnn.run(cell, mg.randn(3, 1, 2, rng=np.random.default_rng(1)), backend="graph")
    r.outputs.sum().backward()
    norms = [float(np.linalg.norm(s[0].grad)) for s in r.states]
    assert max(norms) / min(norms) < 10    # a spread of less than a decade...
    src = viz.draw_unrolled(r, grad=True).source
    bar = re.search(r'"viz.colorbar" \[[^\n]*', src).group(0)
    ticks = [float(v) for v in re.findall(r'<td align="left">([0-9.e-]+)</td>', bar)]
    assert ticks and max(ticks) / min(ticks) >= 100          # ...drawn on two decades at least
    assert "max/min = " in bar
    fills = {re.search(rf'"{re.escape(ids[0])}" \[[^\n]*fillcolor="(#[0-9A-F]{{6}})"', src).group(1)
             for ids in r.graph.state_out}
    assert len({_luminance(f) // 0.15 for f in fills}) <= 2  # so they look alike, as they nearly are
    fixed = viz.draw_unrolled(r, grad=True, scale=(1e-8, 1.0)).source
    assert "1e-8" in fixed and "1e0" in fixed


def test_mg_scope_boxes_its_ops_and_collapses():
    x = mg.tensor(np.ones((2, 3)), requires_grad=True, name="x")
    with mg.scope("encoder"):
        h = (x * 2).tanh()
    y = mg.softmax(h, axis=-1).sum()
    boxed = viz.draw_graph(y).source
    assert 'subgraph "cluster_scope.encoder"' in boxed and 'subgraph "cluster_scope.softmax"' in boxed
    assert 'subgraph "cluster_scope.softmax.log_softmax"' in boxed     # nested as the scopes were
    collapsed = viz.draw_graph(y, collapse_scopes=True).source
    assert "viz.scope.encoder" in collapsed and ">tanh<" not in collapsed and "ops, collapsed" in collapsed


def test_a_huge_graph_is_refused_before_any_dot_is_made_with_a_way_out(monkeypatch):
    import viz.draw
    x = mg.tensor(np.ones(2), requires_grad=True)
    h = x
    for _ in range(5000):
        h = h * 1.0001 + x                  # 10,000 recorded ops
    made = []
    monkeypatch.setattr(viz.draw, "to_digraph", lambda *a, **k: made.append(a))   # Graphviz never gets it
    with pytest.raises(viz.TooLarge, match=r"draw_graph: .* past the drawing budget .*mg.scope.*budget=None"):
        viz.draw_graph(h.sum())
    assert not made


def test_a_long_unrolling_collapses_itself_to_the_budget():
    src = viz.draw_unrolled(cell_of("elman"), steps=3000).source
    assert len(clusters(src)) * 4 <= viz.BUDGET and "steps …" in src
    assert len(clusters(viz.draw_unrolled(cell_of("elman"), steps=300, budget=None).source)) == 300


def _edge(src, a, b):
    """The attributes of the edge a -> b in DOT source, or None."""
    m = re.search(rf'^\s*"?{re.escape(a)}"? -> "?{re.escape(b)}"?(?: \[([^\n]*)\])?$', src, re.M)
    return None if m is None else (m.group(1) or "")


def test_a_deep_net_is_drawn_rolled_with_a_block_per_layer_as_fig_10_13a():
    deep = rnn.Stacked([rnn.LSTMCell(3, 4, rng=np.random.default_rng(0)), rnn.ElmanCell(4, 5)])
    g = deep.rolled()
    src = viz.draw_rolled(deep).source
    ids = {lp.name: lp.output for lp in g.loops}
    assert "layer 1" in src and "layer 2" in src
    assert "U1" in _edge(src, g.x, "viz.cell.0") and _edge(src, g.x, "viz.cell.1") is None  # x feeds layer 1 only
    assert "U2" in _edge(src, ids["h1"], "viz.cell.1")                                       # h1(t) feeds layer 2
    for name, block, sym in (("h1", 0, "W1"), ("c1", 0, None), ("h2", 1, "W2")):            # each state back into its own
        assert _edge(src, f"viz.cell.{block}", ids[name]) is not None
        label = _edge(src, f"viz.delay.{ids[name]}", f"viz.cell.{block}")
        assert f"{name}(t−1)" in label and (sym is None or sym in label)
        assert _edge(src, f"viz.delay.{ids[name]}", f"viz.cell.{1 - block}") is None


def test_a_bidirectional_net_is_drawn_rolled_with_a_delay_and_an_advance():
    bi = rnn.Bidirectional(rnn.ElmanCell(2, 3), rnn.ElmanCell(2, 3))
    g = bi.rolled()
    src = viz.draw_rolled(bi).source
    f, b = (next(lp for lp in g.loops if lp.name == n) for n in ("h_f", "h_b"))
    assert "forward chain" in src and "backward chain" in src
    assert "W→ · h_f(t−1)" in _edge(src, f"viz.delay.{f.output}", "viz.cell.0")
    assert "W← · h_b(t+1)" in _edge(src, f"viz.delay.{b.output}", "viz.cell.1")
    assert "1-step advance" in src and "U←" in _edge(src, g.x, "viz.cell.1") and "U→" in _edge(src, g.x, "viz.cell.0")
    for lp in (f, b):
        assert _edge(src, lp.output, g.output) is not None    # o(t) reads both


@pytest.mark.parametrize("params", ["labels", "nodes"])
def test_frozen_parameters_are_marked_as_such(params):
    esn = rnn.EchoState(1, 6, output_size=1, rng=np.random.default_rng(0))
    src = viz.draw_rolled(esn, params=params).source
    if params == "labels":
        table = re.search(r'"viz.params" \[[^\n]*', src).group(0)
        assert {n for n in ("weight_hh", "weight_ih", "bias", "V", "c") if f">{n} (frozen)<" in table} == \
            {"weight_hh", "weight_ih", "bias"}
    else:
        assert src.count("frozen: not learnt") == 3
