"""Scenes of encoder–decoder nets (Goodfellow et al. Fig. 10.12) and of attention weights.

The joint picture is the two unrolled chains, each drawn as `unrolled_scene` draws a chain, joined
by the context C: the encoder's final state goes into C, and C into the decoder — as its initial
state, as an input read at every step, or both.  An attention decoder reads E, every encoder
output, at every step instead.  The alignment α(t, s) of a decoded sequence is a heat map: one row
per target position, one column per source position.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .labels import number, shape_text
from .rnn_scene import unrolled_scene
from .scene import Item, Link, Scene, legend


def _renamed(scene, prefix, title):
    """`scene` with every id prefixed (two chains' ids would collide), its step boxes and parameter
    table titled as the encoder's or decoder's, and no legend of its own."""
    p = lambda i: prefix + i  # noqa: E731
    items = []
    for it in scene.items:
        if it.kind == "legend":
            continue
        rows = (f"{title} parameters",) + it.rows[1:] if it.kind == "paramtable" else it.rows
        items.append(replace(it, id=p(it.id), rows=rows, cluster=it.cluster and p(it.cluster)))
    return Scene(scene.title, scene.rankdir, items,
                 [replace(l, src=p(l.src), dst=p(l.dst)) for l in scene.links],
                 [replace(c, id=p(c.id), title=f"{title} {c.title}", parent=c.parent and p(c.parent))
                  for c in scene.clusters],
                 [[p(i) for i in g] for g in scene.same_rank], [p(i) for i in scene.chain],
                 [p(i) for i in scene.chain2])


def _stand_in(scene, old, new):
    """Every drawn `old` id replaced by `new` (drawn once, elsewhere): its items dropped, its links
    rerouted, its layout hints dropped."""
    old = set(old)
    scene.items = [i for i in scene.items if i.id not in old]
    scene.links = [replace(l, src=new if l.src in old else l.src) for l in scene.links]
    scene.same_rank = [[i for i in g if i not in old] for g in scene.same_rank]
    scene.chain = [i for i in scene.chain if i not in old]


def seq2seq_scene(result, params="labels"):
    enc_graph, dec_graph = result.encoder.graph, result.decoder.graph
    enc = _renamed(unrolled_scene(enc_graph, "block", params=params), "enc.", "encoder")
    dec = _renamed(unrolled_scene(dec_graph, "block", params=params), "dec.", "decoder")
    S, T = enc_graph.T, dec_graph.T
    how = {"initial": "C starts the decoder", "input": "the decoder reads C at every step",
           "both": "C starts the decoder and is read at every step",
           "attention": "attention over every encoder output"}[result.mode]
    title = f"Encoder–decoder, S = {S} and T = {T} steps: {how}"
    scene = Scene(title, "LR", enc.items + dec.items, enc.links + dec.links, enc.clusters + dec.clusters,
                  enc.same_rank + dec.same_rank, enc.chain + dec.chain, enc.chain2 + dec.chain2)

    # C: the encoder's final state(s), into one node
    finals = ["enc." + i for i in enc_graph.final]
    c_shape = enc_graph.nodes[enc_graph.final[0]].shape
    scene.items.append(Item("viz.C", "context", ("C", shape_text(c_shape), "the encoder's final state")))
    scene.links.extend(Link(f, "viz.C", "state") for f in finals)
    # ... standing for the decoder's initial state and/or its every-step input
    if result.mode != "input":
        _stand_in(scene, ["dec." + i for i in dec_graph.state0], "viz.C")
    else:   # the decoder starts from zeros: keep it after C all the same
        scene.links.append(Link("viz.C", "dec." + dec_graph.state0[0], "order"))
    if result.attends:
        E, bias = ("dec." + i for i in dec_graph.context)
        masked = bool(np.any(result.decoder.graph.tensors[dec_graph.context[1]].data < 0))
        shape = enc_graph.nodes[enc_graph.outputs[0]].shape
        scene.items.append(Item("viz.E", "context", ("E", f"{S} × {shape_text(shape)}",
                                                     "every encoder output" + (", padding masked" if masked else ""))))
        outs = ["enc." + i for i in enc_graph.outputs]
        scene.links.extend(Link(o, "viz.E", "data") for o in outs if any(it.id == o for it in scene.items))
        _stand_in(scene, [E], "viz.E")
        _stand_in(scene, [bias], "viz.E")
        scene.links = _unique(scene.links)
    elif dec_graph.context:
        _stand_in(scene, ["dec." + i for i in dec_graph.context], "viz.C")
    legend(scene, states=list(dict.fromkeys(enc_graph.state_names + dec_graph.state_names)))
    return scene


def _unique(links):
    seen, out = set(), []
    for l in links:
        key = (l.src, l.dst, l.kind)
        if key not in seen:
            seen.add(key)
            out.append(l)
    return out


def attention_scene(weights, source=None, target=None, title=None):
    """A heat map of α (T, S): row t the weights decoder step t gave the S source positions."""
    w = np.asarray(weights, dtype=float)
    T, S = w.shape
    cols = [str(s) for s in (source if source is not None else range(1, S + 1))]
    rows = [str(t) for t in (target if target is not None else range(1, T + 1))]
    if len(cols) != S or len(rows) != T:
        raise ValueError(f"draw_attention: {S} source and {T} target positions, but {len(cols)} source and "
                         f"{len(rows)} target labels")
    scene = Scene(title or "Attention: α(t, s), each row a decoder step's weights over the source", "TB")
    scene.items.append(Item("viz.heatmap", "heatmap", ("target ↓   source →",),
                            data={"weights": w, "rows": rows, "cols": cols,
                                  "max": number(float(w.max())) if w.size else "0"}))
    return scene

