"""Pictures of recursive nets as Goodfellow et al. draw them in Fig. 10.14: the tree, root on top.

The inputs x(1), x(2), ... sit in a row at the bottom, in the order of the leaves, each feeding its
leaf's state through V; every internal node's state is fed by exactly its children's states,
through U (left child) and W (right child), the same U, V, W at every node; o, y and L sit above the
root when the network has them.  A state is named by the leaves it spans, h(2–3), with the words
under it.  Every parameter is listed once, in a table beside the tree.  With ``grad=True`` each state
is coloured by ‖∂L/∂h‖ on the log scale the unrolled chains use (viz.gradients.LogScale).

A lopsided tree (a long chain) is ranked by depth instead, each leaf's input under it: lining its
inputs up would cost Graphviz minutes.  A tree past the drawing budget is folded: the subtrees
below some depth become one node each, "subtree h(1–4995)", so the top of a huge tree can still be
looked at.
"""
from __future__ import annotations

import numpy as np

from .dot import to_digraph
from .draw import BUDGET, TooLarge, _drop_legend
from .gradients import LogScale, _norm
from .labels import number, shape_text
from .scene import Item, Link, Scene, legend

PHRASE = 28   # characters of a node's words shown under its name; longer phrases are cut with "…"
CROSSED_ROWS = 400   # rows crossed by edges, past which the inputs are not all drawn in the bottom row


def draw_tree(model, tree=None, *, grad=False, scale=None, collapse=None, legend=True, budget=BUDGET):
    """A recursive net over a tree, drawn as Fig. 10.14.

    model: an `rnn.TreeResult` (from rnn.run_tree; needed for grad=True), or an rnn.TreeCell
        with `tree`, an rnn.Tree (or nested tuples of inputs, see rnn.tree), which is then run.
    grad: colour each state by ‖∂L/∂h‖ on a log scale, after backward().
    scale: (low, high), the norms the colour scale spans (to compare pictures).
    collapse: a depth k: nodes deeper than k are folded into one node per subtree.  Left out, a
        tree past `budget` drawn nodes is folded at the depth that fits (budget=None draws all).
    """
    result = _as_result(model, tree)
    if collapse is not None and (isinstance(collapse, bool) or not isinstance(collapse, int) or collapse < 0):
        raise ValueError(f"draw_tree: collapse must be a depth, an integer >= 0, got {collapse!r}")
    norms = lscale = None
    if grad:
        norms = [_norm(s) for s in result.states]
        if all(n is None for n in norms):
            raise ValueError("draw_tree(grad=True): no state gradients found; pass the TreeResult of "
                             "rnn.run_tree(...) after calling backward() on a loss computed from it")
        lscale = LogScale(norms, scale)
    if collapse is None and budget is not None:
        collapse = _fitting_depth(result.nodes, budget)
    scene = tree_scene(result, collapse, norms, lscale)
    return to_digraph(_drop_legend(scene, legend), name="tree")


def _as_result(model, tree):
    from rnn.tree import Tree, TreeCell, TreeResult, run_tree
    from rnn.tree import tree as build
    if isinstance(model, TreeResult):
        if tree is not None:
            raise TypeError("draw_tree: a TreeResult already holds its tree; pass tree= only with a cell")
        return model
    if isinstance(model, TreeCell):
        if tree is None:
            raise TypeError(f"draw_tree: a {type(model).__name__} is drawn over a tree: draw_tree(cell, tree)")
        import minigrad as mg
        with mg.no_grad():
            return run_tree(model, tree if isinstance(tree, Tree) else build(tree))
    raise TypeError(f"draw_tree: expected an rnn.TreeResult, or an rnn.TreeCell and a tree; got {type(model).__name__}")


def _fitting_depth(nodes, budget):
    """The deepest fold that keeps the drawing within `budget` nodes, or None when all of it fits.
    Folding below depth k draws every node down to depth k + 1, a leaf as two (x and h), any other
    node as one (itself, or its folded subtree at depth k + 1)."""
    per_depth = {}
    for n in nodes:
        per_depth[n.depth] = per_depth.get(n.depth, 0) + (2 if n.is_leaf else 1)
    if sum(per_depth.values()) <= budget:
        return None
    drawn, fits = per_depth[0], None
    for k in range(max(per_depth)):
        drawn += per_depth[k + 1]
        if drawn > budget:
            break
        fits = k
    if fits is None:
        raise TooLarge(f"draw_tree: the root and its {len(nodes[-1].children)} children alone pass the drawing "
                       f"budget of {budget:,} nodes; pass budget=None to draw them anyway")
    return fits


def _edge_symbols(cell):
    """What the picture writes on each edge: {"x": ..., 0: ..., 1: ..., "h": ...}, from the cell's
    `acts_on` and `symbols`."""
    out = {}
    for pname, on in getattr(cell, "acts_on", {}).items():
        sym = cell.symbols.get(pname, pname)
        out[on] = f"{out[on]}, {sym}" if on in out else sym
    return out


def tree_scene(result, collapse=None, norms=None, scale=None):
    """The Scene of a TreeResult: see the module docstring.  norms: ‖∂L/∂h‖ per node (in
    result.nodes order) coloured by `scale`; collapse: fold the subtrees below that depth."""
    from rnn.tree import phrases
    cell, nodes = result.cell, result.nodes
    sym = _edge_symbols(cell)
    n_leaves = nodes[-1].span[1]
    title = (f"{getattr(cell, 'display_name', None) or type(cell).__name__} over {n_leaves} "
             f"lea{'f' if n_leaves == 1 else 'ves'}: depth {result.depth} from x to the root "
             f"(a chain would be {n_leaves})")
    scene = Scene(title, rankdir="BT")
    words = phrases([n.tree for n in nodes], PHRASE)
    worded = set()   # the nodes with a word under them: only those show their phrase
    for n in nodes:
        if n.word is not None or any(c in worded for c in n.children):
            worded.add(n.index)

    def drawn(n):
        """The id node n is drawn as: its state, its folded subtree, or None inside a folded subtree."""
        if collapse is None or n.depth <= collapse or (n.depth == collapse + 1 and n.is_leaf):
            return f"h{n.index}"
        return f"viz.subtree.{n.index}" if n.depth == collapse + 1 else None
    ids = [drawn(n) for n in nodes]

    xs, leaf_row = [], []
    for n, nid in zip(nodes, ids):
        if nid is None:
            continue
        if nid.startswith("viz.subtree."):
            scene.items.append(_subtree_item(n, nodes, norms, scale))
            leaf_row.append(nid)
            continue
        rows = [n.label] + ([words[n.tree]] if not n.is_leaf and n.index in worded else [])
        fill = None
        if scale is not None:
            rows.append(f"‖∂L/∂h‖ {number(norms[n.index])}" if norms[n.index] is not None else "no gradient")
            fill = scale.color(norms[n.index])
        scene.items.append(Item(nid, "state", tuple(rows), fill=fill))
        if n.is_leaf:
            xid = f"x{n.index}"
            scene.items.append(Item(xid, "input", (f"x({n.span[0]})", n.word if n.word is not None
                                                   else shape_text(n.x.shape))))
            scene.links.append(Link(xid, nid, "input", sym.get("x")))
            xs.append(xid)
            leaf_row.append(nid)
    for n, nid in zip(nodes, ids):   # each state's incoming edges: exactly its children's, left to right
        if nid is not None and nid.startswith("h"):
            scene.links += [Link(ids[c], nid, "state", sym.get(slot)) for slot, c in enumerate(n.children)]
    anchor = _rows(scene, nodes, ids, xs, leaf_row)
    _head(scene, result, sym)
    _param_table(scene, cell)
    if scale is not None and not scale.empty:
        scene.items.append(Item("viz.colorbar", "colorbar", (scale.title(),), data={"ticks": scale.ticks()}))
    legend(scene, wording="tree")
    # The key (parameters, colour scale, legend) in a row of its own under the lowest row: in the
    # inputs' row its height would push them away from the leaves they feed.
    scene.links += [Link(i.id, anchor, "order") for i in scene.items if i.kind in ("paramtable", "colorbar", "legend")]
    return scene


def _rows(scene, nodes, ids, xs, leaf_row):
    """Rank the drawn tree; returns the node the key goes under.

    As the book does when it is cheap: every input in the bottom row, every leaf's state in the row
    above (`leaf_row`: folded subtrees too), each internal node above its highest child.  An edge
    from a low child to a high parent then crosses many rows, each a hidden node to Graphviz, whose
    layout time grows much faster than their number: a lopsided tree (a chain of 80 leaves: 3,000
    of them, 20 s) is instead ranked by depth, each node one row under its parent and each leaf's
    input under it.  Either way invisible edges along a row keep its nodes in leaf order, left to
    right (left alone, dot mirrors subtrees of a bottom-to-top tree): along the leaves' row, not the
    inputs', where they would pack the narrower x boxes tighter than the states and slant every V edge.
    """
    height, hidden = {}, 0
    for n, nid in zip(nodes, ids):
        if nid is not None:
            kids = [height[c] for c in n.children if ids[c] is not None]
            height[n.index] = 1 + max(kids) if kids and nid.startswith("h") else 0
            hidden += sum(height[n.index] - k - 1 for k in kids)
    if hidden <= CROSSED_ROWS:
        scene.same_rank += [xs, leaf_row]
        scene.links += [Link(a, b, "order") for a, b in zip(leaf_row, leaf_row[1:])]
        return xs[len(xs) // 2] if xs else leaf_row[len(leaf_row) // 2]
    for n, nid in zip(nodes, ids):
        if nid is not None and nid.startswith("h") and len(n.children) > 1:
            siblings = [ids[c] for c in n.children]
            scene.same_rank.append(siblings)
            scene.links += [Link(a, b, "order") for a, b in zip(siblings, siblings[1:])]
    deepest = max((n for n, nid in zip(nodes, ids) if nid is not None), key=lambda n: n.depth)
    return f"x{deepest.index}" if deepest.is_leaf else ids[deepest.index]


def _subtree_item(n, nodes, norms, scale):
    """One node for the folded subtree under n: which leaves, how many nodes, its gradients' range."""
    first, last = n.span
    size = _subtree_size(n, nodes)
    rows = [f"subtree {n.label}", f"leaves {first}–{last}, {size} nodes folded"]
    if scale is not None:
        vals = [norms[i] for i in range(n.index - size + 1, n.index + 1) if norms[i] is not None]
        if vals:
            rows.append(f"‖∂L/∂h‖ {number(min(vals))} to {number(max(vals))}")
    return Item(f"viz.subtree.{n.index}", "elision", tuple(rows))


def _subtree_size(n, nodes):
    """Nodes under n, n included: the nodes list holds a subtree contiguously, ending at its root,
    and its first node is its leftmost leaf."""
    first = n.index
    while not nodes[first].is_leaf:
        first = nodes[first].children[0]
    return n.index - first + 1


def _head(scene, result, sym):
    """o above the root, and y → L ← o when there is a loss, as the book's figure tops its tree."""
    root = f"h{result.root.index}"
    if result.output is not result.state:
        scene.items.append(Item("viz.o", "output", ("o", shape_text(result.output.shape))))
        scene.links.append(Link(root, "viz.o", "data", sym.get("h")))
        top = "viz.o"
    else:
        top = root
    if result.loss is not None:
        y = np.asarray(result.target.data)
        scene.items.append(Item("viz.y", "target", ("y", f"= {y.item()}" if y.size == 1 else shape_text(y.shape))))
        scene.items.append(Item("viz.L", "loss", ("L", f"= {number(result.loss.item())}")))
        scene.links += [Link(top, "viz.L", "loss"), Link("viz.y", "viz.L", "target")]
        scene.same_rank.append([top, "viz.y"])


def _param_table(scene, cell):
    rows = [(cell.symbols.get(name, name), name, shape_text(p.shape)) for name, p in cell.named_parameters()]
    if rows:
        scene.items.append(Item("viz.params", "paramtable", ("parameters, shared by every node",),
                                data={"rows": rows}))
