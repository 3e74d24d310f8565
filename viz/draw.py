"""The public drawing functions: a model in, a `graphviz.Digraph` out.

Each one accepts what a learner has at hand (a tensor, a cell, a rolled or
unfolded graph, an `rnn.RunResult`), builds a `viz.scene.Scene` and draws it
with `viz.dot.to_digraph`.  The result renders with ``.render()`` or
`viz.render`, and shows inline in Jupyter.
"""
from __future__ import annotations

import numpy as np

from minigrad import Tensor
from minigrad.graph import Graph, trace
from minigrad.walk import toposort

from .dot import to_digraph
from .gradients import LogScale, state_grad_norms
from .labels import number
from .rnn_scene import PARAMS, rolled_scene, unrolled_scene
from .scene import expression_scene
from .seq2seq_scene import attention_scene, seq2seq_scene

DETAILS = ("block", "ops")
# Past this many drawn nodes Graphviz's layout takes tens of seconds to minutes: a drawing collapses
# what it can (steps, scopes) or says how to get the whole picture instead of waiting.
BUDGET = 800


def _check_detail(fn, detail, params="labels"):
    if detail not in DETAILS:
        raise ValueError(f"{fn}: detail must be one of {DETAILS}, got {detail!r}")
    if params not in PARAMS:
        raise ValueError(f"{fn}: params must be one of {PARAMS}, got {params!r}")


def _drawn(scene):
    return sum(1 for i in scene.items if i.kind not in ("legend", "colorbar", "paramtable"))


class TooLarge(ValueError):
    """A picture past the drawing budget that cannot be collapsed: the message says how to draw it."""


def _drop_legend(scene, legend):
    if not legend:
        scene.items = [i for i in scene.items if i.kind != "legend"]
    return scene


def draw_graph(*roots, legend=True, collapse_scopes=None, budget=BUDGET):
    """The engine's recorded graph behind `roots` (tensors), or a `minigrad.Graph`.

    Value nodes show name and shape, and data and grad for scalars; op nodes
    sit between them; roles are set apart by colour; the ops of an `mg.scope`
    sit in a box of their own, or, with `collapse_scopes`, become one node.
    Past `budget` drawn nodes the scopes are collapsed (when the graph has
    any), else TooLarge says how to draw it; budget=None draws anything.
    """
    if len(roots) == 1 and isinstance(roots[0], Graph):
        graph = roots[0]
    elif roots and all(isinstance(r, Tensor) for r in roots):
        graph = trace(*roots)
    else:
        raise TypeError("draw_graph: pass one or more minigrad Tensors, or one minigrad.Graph; "
                        f"got {', '.join(type(r).__name__ for r in roots) or 'nothing'}")
    scene = expression_scene(graph, bool(collapse_scopes))
    if budget is not None and _drawn(scene) > budget and collapse_scopes is None \
            and any(n.scope for n in graph.nodes.values()):
        scene = expression_scene(graph, True)
    if budget is not None and _drawn(scene) > budget:
        raise TooLarge(f"draw_graph: {len(graph.nodes):,} values and ops are past the drawing budget of "
                       f"{budget:,} nodes (Graphviz would take minutes); record parts of the computation "
                       "inside `with mg.scope(name):` to draw each as one node, draw a smaller part, or pass "
                       "budget=None to draw everything")
    return to_digraph(_drop_legend(scene, legend), name="expression")


def as_rolled(obj, fn):
    from rnn import RolledGraph, UnfoldedGraph
    if isinstance(obj, RolledGraph):
        return obj
    if isinstance(obj, UnfoldedGraph):
        return obj.rolled
    graph = getattr(obj, "graph", None)   # an rnn.RunResult
    if isinstance(graph, UnfoldedGraph):
        return graph.rolled
    if callable(getattr(obj, "rolled", None)):   # a cell: drawn with its loss, if it has one
        return obj.rolled(targets="auto")
    raise TypeError(f"{fn}: expected an rnn cell, a rolled or unfolded graph, or an rnn.RunResult; "
                    f"got {type(obj).__name__}")


def draw_rolled(model, detail="block", legend=True, params="labels"):
    """The cell with its loop: each state's feedback edge passes a black delay square.

    model: an rnn cell, its rolled graph (`cell.rolled()`), an unfolded graph or a RunResult.
    detail: "block" (the step as one box) or "ops" (every engine op of the step).
    params: "labels" (each weight's symbol on the edges it acts on, all listed once in a table)
        or "nodes" (a node per parameter with an edge to each op that reads it).
    """
    _check_detail("draw_rolled", detail, params)
    rolled = as_rolled(model, "draw_rolled")
    return to_digraph(_drop_legend(rolled_scene(rolled, detail, params), legend), name="rolled")


def draw_unrolled(model, steps=None, detail="block", collapse=None, grad=False, loss=None, legend=True,
                  params="labels", scale=None, budget=BUDGET):
    """The chain of T steps, one cluster per step, left to right; parameters drawn once.

    model: an `rnn.RunResult` (needed for grad=True), an unfolded graph, a
        rolled graph or a cell (unfolded over `steps`, default 3).
    steps: the number of steps, for a cell or rolled graph; must equal T otherwise.
    collapse: k draws only the first k and last k steps, the rest as one
        elision node, so long sequences stay quick and readable.  Left out, a
        picture past `budget` drawn nodes is collapsed so that it fits
        (budget=None draws every step).
    grad: colour each state node by ‖∂L/∂h(t)‖ on a log scale, after backward().
    scale: (low, high), the norms the colour scale spans (to compare pictures);
        by default whole decades around the norms drawn, at least two.
    loss: the loss tensor, drawn as one node fed by the steps it depends on.
    params: as for draw_rolled.
    """
    _check_detail("draw_unrolled", detail, params)
    if collapse is not None and (not isinstance(collapse, int) or isinstance(collapse, bool) or collapse < 1):
        raise ValueError(f"draw_unrolled: collapse must be a positive integer number of steps, got {collapse!r}")
    graph, states = _as_unfolded(model, steps)
    span, norms, scale = scale, None, None
    if grad:
        norms = state_grad_norms(graph, states)
        if all(n is None for n in norms.values()):
            raise ValueError("draw_unrolled(grad=True): no state gradients found; pass the RunResult of "
                             "rnn.run(...) after calling loss.backward() on a loss computed from it")
        scale = LogScale(norms.values(), span)
    loss_spec = _loss_spec(graph, states, loss) if loss is not None else None
    if collapse is None and budget is not None:
        per_step = _per_step(graph, detail)
        if graph.T * per_step > budget:
            collapse = max(1, budget // (2 * per_step))
    scene = unrolled_scene(graph, detail, collapse, norms, scale, loss_spec, params)
    return to_digraph(_drop_legend(scene, legend), name="unrolled")


def _per_step(graph, detail):
    """About how many nodes one step draws."""
    if detail == "block":
        return 10  # four or five nodes, but wide ones: a few dozen steps make a long picture already
    rolled = graph.rolled
    return max(1, len(rolled.nodes) - len(rolled.params))


def _as_unfolded(model, steps):
    from rnn import RolledGraph, UnfoldedGraph, unfold
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"draw_unrolled: steps must be a positive integer, got {steps!r}")
    graph, states = getattr(model, "graph", None), getattr(model, "states", None)
    if isinstance(graph, UnfoldedGraph):          # an rnn.RunResult
        pass
    elif isinstance(model, UnfoldedGraph):
        graph, states = model, None
    elif isinstance(model, RolledGraph):
        return unfold(model, steps or 3), None
    elif callable(getattr(model, "rolled", None)):
        return unfold(model.rolled(targets="auto"), steps or 3), None
    else:
        raise TypeError("draw_unrolled: expected an rnn.RunResult, an unfolded or rolled graph, or an rnn cell; "
                        f"got {type(model).__name__}")
    if steps is not None and steps != graph.T:
        raise ValueError(f"draw_unrolled: steps={steps} but the graph has T={graph.T} steps "
                         "(leave steps out, or use collapse= to show fewer)")
    return graph, states


def _loss_spec(graph, states, loss):
    """The loss node's text, and which state outputs it depends on (found by walking its recorded graph)."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"draw_unrolled: loss must be a minigrad Tensor, got {type(loss).__name__}")
    rows = [loss.name or "loss L"]
    if loss.data.size == 1:
        rows.append(f"= {number(np.asarray(loss.data).reshape(()))}")
    tensors = dict(getattr(graph, "tensors", None) or {})
    for ids, tup in zip(graph.state_out, states or ()):
        tensors.update(zip(ids, tup if isinstance(tup, (tuple, list)) else (tup,)))
    state_of = {id(t): nid for nid, t in tensors.items() if nid in _out_ids(graph)}
    feeding = _direct_states(loss, state_of)
    if not feeding:
        raise ValueError("draw_unrolled(loss=...): the loss does not read any step's state in the recorded graph; "
                         "the numba backend records the whole sequence as one op, so draw a loss from "
                         "rnn.run(..., backend='graph')")
    return tuple(rows), feeding


def _out_ids(graph):
    return {nid for ids in graph.state_out for nid in ids}


def _direct_states(loss, state_of):
    """State outputs the loss reads without passing through a later state: its direct inputs along the chain.

    Stopping at the first state met keeps h(1) from counting just because h(2) depends on it.
    """
    reached = toposort([loss], lambda t: () if id(t) in state_of else t._parents)
    found = [state_of[id(t)] for t in reached if id(t) in state_of]
    order = {nid: i for i, nid in enumerate(state_of.values())}
    return sorted(found, key=order.get)


def draw_seq2seq(result, params="labels", legend=True):
    """An encoder–decoder net as Goodfellow et al. Fig. 10.12: the encoder's chain, its final state
    into the context C, the decoder's chain conditioned on C (or reading E, every encoder output,
    through attention).  result: what `rnn.Seq2Seq` returns for a batch (model(src, tgt)) or
    `model.decode(src, steps).result`."""
    if params not in PARAMS:
        raise ValueError(f"draw_seq2seq: params must be one of {PARAMS}, got {params!r}")
    if not (hasattr(result, "encoder") and hasattr(result, "decoder") and hasattr(result, "mode")):
        raise TypeError("draw_seq2seq: expected the result of an rnn.Seq2Seq (model(src, tgt), or "
                        f"model.decode(src, steps).result), got {type(result).__name__}")
    return to_digraph(_drop_legend(seq2seq_scene(result, params), legend), name="seq2seq")


def draw_attention(weights, source=None, target=None, title=None):
    """The alignment α(t, s) as a heat map: (T, S) weights (one decoded sequence's), or a
    `model.decode(...)` result and the sequence's index in the batch as weights=(decoded, b).
    source, target: labels of the S source and T target positions (tokens)."""
    if isinstance(weights, tuple) and len(weights) == 2 and hasattr(weights[0], "alignments"):
        decoded, b = weights
        if decoded.alignments is None:
            raise ValueError("draw_attention: this model does not attend (context='attention' does)")
        weights = decoded.alignments[:, b]
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2:
        raise ValueError(f"draw_attention: weights must be (target steps, source positions), got shape {w.shape}")
    return to_digraph(attention_scene(w, source, target, title), name="attention")
