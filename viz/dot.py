"""Drawing: a `viz.scene.Scene` turned into a `graphviz.Digraph`.

All Graphviz syntax lives here: attributes from the style table, HTML-like
labels built from escaped text (`viz.labels`), clusters as ``cluster_*``
subgraphs.  Items and links are emitted in the scene's order, so equal scenes
give byte-identical DOT.
"""
from __future__ import annotations

import graphviz
import numpy as np

from .gradients import text_color
from .labels import escape, html
from .style import STYLE, legend_entries, role_attrs


def to_digraph(scene, name="minigrad"):
    gattr = dict(STYLE["graph"], rankdir=scene.rankdir, forcelabels="true")
    if scene.title:
        gattr.update(label=html(scene.title, size=STYLE["font"]["title"]), labelloc="t", labeljust="l")
    dg = graphviz.Digraph(name=name, graph_attr=gattr, node_attr=dict(STYLE["node"]), edge_attr=dict(STYLE["edge"]))
    groups = {**{i: "chain2" for i in scene.chain2}, **{i: "chain" for i in scene.chain}}
    members = {c.id: [] for c in scene.clusters}
    inner = {c.id: [] for c in scene.clusters}
    for item in scene.items:
        if item.cluster is None:
            dg.node(item.id, **node_attrs(item), **({"group": groups[item.id]} if item.id in groups else {}))
        else:
            members[item.cluster].append(item)
    for c in scene.clusters:
        if c.parent is not None:
            inner[c.parent].append(c)

    def cluster(graph, c):
        with graph.subgraph(name=f"cluster_{c.id}") as sub:
            sub.attr(label=html(c.title), **STYLE["scope" if c.parent is not None or c.id.startswith("scope.")
                                                  else "cluster"])
            for item in members[c.id]:
                sub.node(item.id, **node_attrs(item), **({"group": groups[item.id]} if item.id in groups else {}))
            for child in inner[c.id]:
                cluster(sub, child)
    for c in scene.clusters:
        if c.parent is None:
            cluster(dg, c)
    for group in scene.same_rank:
        if len(group) > 1:
            with dg.subgraph() as sub:
                sub.attr(rank="same")
                for nid in group:
                    sub.node(nid)
    for link in scene.links:
        attrs = dict(STYLE["edges"].get(link.kind, {}))
        if link.label:
            attrs["label"] = html(link.label, bold_first=False)
        if link.kind == "feedback" and not link.src.startswith("viz.delay."):
            attrs["arrowhead"] = "none"  # the arrow belongs after the delay, into the state it feeds
        if attrs.get("dir") == "back":  # laid out from dst to src, the arrowhead still at dst
            dg.edge(link.dst, link.src, **attrs)
        else:
            dg.edge(link.src, link.dst, **attrs)
    return dg


def node_attrs(item):
    kind = item.kind
    if kind == "legend":
        return {"shape": "plaintext", "style": "", "margin": "0",
                "label": legend_table(item.data["roles"], item.data.get("marks", ()), item.data.get("wording", "chain"),
                                      item.data.get("states", ()))}
    if kind == "paramtable":
        return {"shape": "plaintext", "style": "", "margin": "0",
                "label": param_table(item.rows[0], item.data["rows"], item.data.get("note"))}
    if kind == "heatmap":
        return {"shape": "plaintext", "style": "", "margin": "0", "label": heatmap_table(item.rows[0], item.data)}
    if kind == "colorbar":
        return {"shape": "plaintext", "style": "", "margin": "0", "label": colorbar_table(item.rows[0], item.data["ticks"])}
    if kind == "delay":
        attrs = {k: v for k, v in STYLE["delay"].items() if k != "xlabel_text"}
        attrs["xlabel"] = html(item.data.get("xlabel", STYLE["delay"]["xlabel_text"]), bold_first=False)
        return attrs
    if kind in ("block", "opnode", "elision"):
        attrs = dict(STYLE[kind])
    else:
        attrs = role_attrs(kind)
    color = None
    if item.fill:
        attrs["fillcolor"] = item.fill
        color = text_color(item.fill)
    size = attrs.pop("fontsize", None)
    attrs["label"] = html(*item.rows, size=size, color=color)
    return attrs


def legend_table(roles, marks=(), wording="chain", states=()):
    rows = ['<tr><td colspan="2" align="left"><b>legend</b></td></tr>']
    for _, fill, text in legend_entries(roles, wording, states):
        rows.append(f'<tr><td bgcolor="{fill}" width="18" height="14"></td>'
                    f'<td align="left">{escape(text)}</td></tr>')
    if "delay" in marks:
        rows.append('<tr><td bgcolor="black" width="18" height="14"></td><td align="left">delay (its steps beside it)</td></tr>')
    if "detached" in marks:
        rows.append('<tr><td width="18" height="14">- -</td><td align="left">detached (truncated BPTT)</td></tr>')
    size = STYLE["legend"]["fontsize"]
    return (f'<<font point-size="{size}"><table border="0" cellborder="1" cellspacing="2" cellpadding="3">'
            + "".join(rows) + "</table></font>>")


def param_table(title, rows, note=None):
    """The parameters, each once: symbol (as written on the edges), name, shape."""
    named = any(sym != name for sym, name, _ in rows)  # a column of names only where symbols stand for them
    cols = 3 if named else 2
    out = [f'<tr><td colspan="{cols}" align="left"><b>{escape(title)}</b></td></tr>']
    for sym, name, shape in rows:
        cells = [f"<b>{escape(sym)}</b>"] + ([escape(name)] if named else []) + [escape(shape)]
        out.append("<tr>" + "".join(f'<td align="left">{c}</td>' for c in cells) + "</tr>")
    if note:
        out.append(f'<tr><td colspan="{cols}" align="left">{escape(note)}</td></tr>')
    size = STYLE["legend"]["fontsize"]
    return (f'<<font point-size="{size}"><table border="0" cellborder="1" cellspacing="0" cellpadding="3" '
            f'bgcolor="{STYLE["roles"]["parameter"]["fillcolor"]}">' + "".join(out) + "</table></font>>")


def colorbar_table(title, ticks):
    """The colour scale, largest norm on top, each swatch labelled with its value."""
    rows = [f'<tr><td colspan="2" align="left"><b>{escape(title)}</b></td></tr>']
    for color, text in reversed(ticks):
        rows.append(f'<tr><td bgcolor="{color}" width="24" height="14"></td><td align="left">{escape(text)}</td></tr>')
    size = STYLE["legend"]["fontsize"]
    return (f'<<font point-size="{size}"><table border="0" cellborder="0" cellspacing="0" cellpadding="2">'
            + "".join(rows) + "</table></font>>")


def heatmap_table(title, data):
    """Weights in [0, 1] as a grid of cells shaded from STYLE["heatmap"]'s low to high colour, each with
    its value, rows and columns labelled."""
    from .gradients import _rgb
    low, high = (np.array(_rgb(STYLE["heatmap"][k]), float) for k in ("low", "high"))
    w = np.clip(data["weights"], 0.0, 1.0)
    head = "".join(f"<td><b>{escape(c)}</b></td>" for c in data["cols"])
    out = [f'<tr><td colspan="{len(data["cols"]) + 1}" align="left"><b>{escape(title)}</b></td></tr>',
           f"<tr><td></td>{head}</tr>"]
    for label, row in zip(data["rows"], w):
        cells = []
        for v in row:
            fill = "#%02X%02X%02X" % tuple(int(round(c)) for c in low + v * (high - low))
            cells.append(f'<td bgcolor="{fill}" width="30" height="24"><font color="{text_color(fill)}">'
                         f"{v:.2f}</font></td>")
        out.append(f'<tr><td align="right"><b>{escape(label)}</b></td>{"".join(cells)}</tr>')
    size = STYLE["heatmap"]["fontsize"]
    return (f'<<font point-size="{size}"><table border="0" cellborder="1" cellspacing="0" cellpadding="2">'
            + "".join(out) + "</table></font>>")
