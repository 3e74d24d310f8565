"""What to draw, as plain data: a `Scene` of nodes, edges and clusters.

This module decides *which* nodes, edges and clusters a picture has, their
label text (plain, unescaped) and their style keys; `viz.draw` turns a Scene
into Graphviz.  Nothing here knows DOT syntax, so scenes can be tested and
reused without Graphviz.

Scene node ids come from the graph's own ids (``n3``, ``t4.n13``) or are fixed
names with a ``viz.`` prefix, never `id()`, so the same model gives the same
scene and the same DOT text.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .labels import number, scalar, shape_text


@dataclass
class Item:
    """One drawn node."""
    id: str
    kind: str                    # a role ("parameter", "state", ...) or "block", "opnode", "delay", "elision", "legend", "colorbar"
    rows: tuple = ()             # label lines, plain text; the first is the title
    cluster: str | None = None   # id of the Cluster it sits in
    fill: str | None = None      # overrides the style's fill (gradient colours)
    data: dict = field(default_factory=dict)  # kind-specific: legend entries, colour-bar ticks, xlabel


@dataclass
class Link:
    src: str
    dst: str
    kind: str = "data"           # a key of STYLE["edges"]
    label: str | None = None


@dataclass
class Cluster:
    id: str
    title: str
    parent: str | None = None    # a cluster inside another (an mg.scope box inside a step)


@dataclass
class Scene:
    title: str
    rankdir: str = "LR"
    items: list = field(default_factory=list)
    links: list = field(default_factory=list)
    clusters: list = field(default_factory=list)
    same_rank: list = field(default_factory=list)   # groups of item ids kept in one column (LR) / row (TB)
    chain: list = field(default_factory=list)       # item ids drawn as one straight line (the recurrence)
    chain2: list = field(default_factory=list)      # a second straight line (a bidirectional net's backward chain)

    def item(self, id):
        return next(i for i in self.items if i.id == id)


def op_text(node):
    """An op's name with its short attributes, e.g. ``sum(axis=0)``."""
    if not node.attrs:
        return node.op
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(node.attrs.items()))
    return f"{node.op}({args})" if len(args) <= 24 else node.op


def legend(scene, wording="chain", states=()):
    """Append a legend item listing only what the scene draws: its roles (worded for a chain, a plain
    engine graph or a tree: see style.legend_entries), with the names of the states it has, and its
    marks (delays, truncation)."""
    used = {i.kind for i in scene.items} | {"op" for i in scene.items if i.kind == "opnode"}
    marks = [m for m, present in (("delay", "delay" in used),
                                  ("detached", any(l.kind == "detached" for l in scene.links))) if present]
    scene.items.append(Item("viz.legend", "legend", ("legend",), data={"roles": sorted(used), "marks": marks,
                                                                        "wording": wording, "states": list(states)}))


# --- an engine expression -------------------------------------------------

def expression_scene(graph, collapse_scopes=False):
    """Every recorded value, plus one small node per op, like micrograd's draw_dot.  The ops recorded
    in an `mg.scope` sit in a box named after it; with `collapse_scopes` each outermost scope is one
    node instead, its edges those that cross its border."""
    scene = Scene("", rankdir="LR")
    tensors = getattr(graph, "tensors", None) or {}
    outer = {}   # node id -> the collapsed scope node that stands for it
    for nid, node in graph.nodes.items():
        if node.scope and collapse_scopes:
            outer[nid] = f"viz.scope.{node.scope[0]}"
    sizes = defaultdict(int)
    for g in outer.values():
        sizes[g] += 1
    for g, n in sizes.items():
        scene.items.append(Item(g, "block", (g[len("viz.scope."):], f"{n} op{'s' * (n != 1)}, collapsed")))
    boxes = {}
    for nid, node in graph.nodes.items():
        if nid in outer:
            continue
        cluster = None
        if node.scope:
            for depth in range(1, len(node.scope) + 1):
                cid = "scope." + ".".join(node.scope[:depth])
                if cid not in boxes:
                    boxes[cid] = Cluster(cid, node.scope[depth - 1], cluster)
                    scene.clusters.append(boxes[cid])
                cluster = cid
        t = tensors.get(nid)
        data = t.data if t is not None else node.value
        grad = getattr(t, "grad", None)
        rows = [node.name or shape_text(node.shape)]
        if node.name:
            rows.append(shape_text(node.shape))
        if scalar(data) is not None:
            rows.append(f"data {scalar(data)}")
        if scalar(grad) is not None:
            rows.append(f"grad {scalar(grad)}")
        elif grad is not None:
            rows.append(f"‖grad‖ {number((grad ** 2).sum() ** 0.5)}")
        kind = node.role if node.role != "op" else "op"
        scene.items.append(Item(nid, kind, tuple(rows), cluster))
        if node.op != "leaf":
            scene.items.append(Item(f"{nid}.op", "opnode", (op_text(node),), cluster))
            scene.links.append(Link(f"{nid}.op", nid))
    pos = {nid: i for i, nid in enumerate(graph.nodes)}
    seen = set()
    for e in sorted(graph.edges, key=lambda e: (pos[e.dst], e.slot)):
        src, dst = outer.get(e.src, e.src), outer.get(e.dst, f"{e.dst}.op")
        if src != dst and (src, dst) not in seen:
            seen.add((src, dst))
            scene.links.append(Link(src, dst))
    legend(scene, wording="engine")
    return scene
