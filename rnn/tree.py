"""Recursive (tree) networks: the chain of a recurrent net generalised to a tree (Goodfellow et al. §10.6).

The same parameters act at every node of a tree (Fig. 10.14): each leaf reads its input x through V,
each internal node reads its children's states through U (left) and W (right), and the root's
state gives the output o, compared with a target y in a loss L::

    h(leaf) = tanh(b + V x)
    h(node) = tanh(b + U h(left) + W h(right))        # arity k: tanh(b + Σ_k W_k h(child k))
    o = c + W_out h(root),    L = −log softmax(o)[y]

Over τ leaves a recurrent chain composes τ nonlinearities between x(1) and its last state; a
balanced tree composes about log2 τ + 1 between any leaf and the root, so the gradient reaching a
leaf has passed through far fewer Jacobians.

    import rnn
    cell = rnn.RecursiveCell(input_size=4, hidden_size=8, output_size=2)
    t = rnn.tree(("not", ("very", "good")), leaf=vectors)   # vectors: {word: (4,) array}
    r = rnn.run_tree(cell, t, target=0)
    r.loss.backward()                                        # back-propagation through structure

Back-propagation through structure (BPTS) is nothing but `loss.backward()` on the graph the forward
recorded.  Each node has one parent, so the gradient reaching it comes down one path::

    ∂L/∂h(root)    = W_outᵀ ∂L/∂o
    ∂L/∂h(child k) = W_kᵀ diag(1 − h(node)²) ∂L/∂h(node)
    ∂L/∂W_k = Σ_nodes diag(1 − h(node)²) ∂L/∂h(node) h(child k)ᵀ     # one shared W_k: a sum over nodes

Every walk over a tree here is `minigrad.walk.toposort`, which is iterative: a tree thousands of
levels deep (a sentence parsed as a left-branching chain) runs as well as a balanced one.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import Tensor
from minigrad.errors import ShapeError
from minigrad.nn import Module
from minigrad.walk import toposort

from .cell import Cell

_NOT_ARRAYS = (str, bytes, dict, set)  # np.asarray takes them, as 0-d or string arrays


# --- trees ------------------------------------------------------------------------------------

class Tree:
    """A leaf, holding its input `x` ((B, input_size) or (input_size,)), or an internal node, holding
    its children left to right.  `word` names a node in pictures (a leaf's word, say)."""

    __slots__ = ("children", "x", "word")

    def __init__(self, *children, x=None, word=None):
        if children and x is not None:
            raise ValueError(f"Tree: a node holds children or an input x, not both (got {len(children)} "
                             "children and x)")
        if not children and x is None:
            raise ValueError("Tree: a leaf needs its input, Tree(x=...); an internal node, one or more children")
        for i, c in enumerate(children):
            if not isinstance(c, Tree):
                raise TypeError(f"Tree: child {i} is a {type(c).__name__}, expected a Tree "
                                "(rnn.tree builds one from nested tuples)")
        self.children, self.x, self.word = children, x, word

    @property
    def is_leaf(self):
        return not self.children

    def nodes(self):
        """Every node once, each after its children, left subtrees first: the order run_tree computes in."""
        return toposort([self], _children)

    def leaves(self):
        """The leaves, left to right."""
        return [n for n in self.nodes() if n.is_leaf]

    def phrase(self, limit=60):
        """The words under this node, bracketed as the tree groups them: 'not (very good)'."""
        return phrases(self.nodes(), limit)[self]

    def __repr__(self):
        nodes = self.nodes()
        n = sum(1 for t in nodes if t.is_leaf)
        return f"Tree({phrases(nodes, 60)[self]})" if n <= 12 else f"Tree({n} leaves, {len(nodes)} nodes)"


def _children(t):
    return t.children


def phrases(order, limit=60):
    """{node: its words, bracketed as the tree groups them} for the nodes `order` lists (children
    first).  A phrase past `limit` characters becomes its first and last words, 'but … great', so a
    deep tree costs time linear in its size, not its size times its depth."""
    out, ends = {}, {}
    for t in order:
        if t.is_leaf:
            text = str(t.word) if t.word is not None else "x"
            ends[t] = (text, text)
        else:
            kids = t.children
            ends[t] = (ends[kids[0]][0], ends[kids[-1]][1])
            cut = any(out[c] is None for c in kids)   # a child's words were cut: so are these
            text = None if cut else " ".join(out[c] if c.is_leaf else f"({out[c]})" for c in kids)
        out[t] = text if t.is_leaf or (text is not None and len(text) <= limit) else None
    return {t: f"{ends[t][0]} … {ends[t][1]}" if text is None else text for t, text in out.items()}


class _Spec:
    """One place in a nested-tuple spec while `tree` walks it: the item, where it sits, its children."""
    __slots__ = ("item", "parent", "slot", "kids")

    def __init__(self, item, parent=None, slot=None):
        self.item, self.parent, self.slot, self.kids = item, parent, slot, ()

    def position(self):
        """Child indices from the root down to here, for messages."""
        path, s = [], self
        while s.parent is not None:
            path.append(s.slot)
            s = s.parent
        return tuple(path[::-1])


def _spec_children(s):
    if isinstance(s.item, tuple):
        s.kids = tuple(_Spec(c, s, i) for i, c in enumerate(s.item))
    return s.kids


def tree(spec, leaf=None):
    """A Tree from nested tuples: a tuple is an internal node whose items are its children, left to
    right; anything else is a leaf; a Tree inside `spec` is taken as it is.

    leaf: how a leaf's item becomes its input x — a function or a mapping; the item, when it is a
        string, also names the leaf in pictures.  Without it each item is the input itself::

        rnn.tree(("not", ("very", "good")), leaf=vectors)   # vectors: {"good": array, ...}
        rnn.tree(((x1, x2), (x3, x4)))                       # Fig. 10.14's four inputs
    """
    if leaf is not None and not callable(leaf) and not isinstance(leaf, Mapping):
        raise TypeError(f"tree: leaf must be a function or a mapping from a leaf's item to its input, "
                        f"got {type(leaf).__name__}")
    order, built = toposort([_Spec(spec)], _spec_children), {}
    for s in order:
        item = s.item
        if isinstance(item, Tree):
            built[s] = item
        elif isinstance(item, tuple):
            if not item:
                raise ValueError(f"tree: the empty tuple at position {s.position()} is neither a leaf nor a node")
            built[s] = Tree(*(built[k] for k in s.kids))
        else:
            built[s] = Tree(x=_leaf_value(leaf, item, s), word=item if isinstance(item, str) else None)
    return built[order[-1]]   # the root: toposort lists it last


def _leaf_value(leaf, item, s):
    if leaf is None:
        return item
    if isinstance(leaf, Mapping):
        if item not in leaf:
            raise KeyError(f"tree: the leaf {item!r} at position {s.position()} has no input in `leaf` "
                           f"(a mapping of {len(leaf)} entries)")
        return leaf[item]
    return leaf(item)


# --- cells ------------------------------------------------------------------------------------

class TreeCell(Module, metaclass=ABCMeta):
    """What a recursive net computes at a node, written with engine ops.

    Subclass it and define `leaf` and `node`; add `output` and `loss` for a network that is trained
    (rnn.run_tree calls them at the root)::

        def leaf(self, x):          return (x @ self.V.T + self.b).tanh()            # x: (B, input_size)
        def node(self, children):   return (children[0] @ self.U.T + children[1] @ self.W.T + self.b).tanh()
        def output(self, h):        return h @ self.W_out.T + self.c                   # o; h itself by default
        def loss(self, o, y):       return mg.cross_entropy(o, y)                      # L, a scalar

    Every state is one (B, hidden_size) tensor.  Class attributes say the rest:
        arity         the children an internal node has; None: any number, at least one
        target_kind   "classes": the target is integer class indices, one per tree of the batch;
                      None: whatever `loss` takes
        symbols       {parameter name: the symbol pictures write}, as for rnn.Cell
        acts_on       {parameter name: what it multiplies} — "x", a child's slot 0, 1, ... or "h"
                      (the root state, in the output) — so pictures write its symbol on that edge
    """
    arity = None
    target_kind = None
    symbols: dict = {}
    acts_on: dict = {}

    def __init__(self, input_size, hidden_size, dtype=np.float64):
        if int(input_size) < 1:   # a recurrent cell may read nothing per step; every leaf reads its x
            raise ValueError(f"{type(self).__name__}: input_size must be positive (each leaf reads an input), "
                             f"got {input_size}")
        Cell.__init__(self, input_size, hidden_size, dtype)   # the rest checked and kept as a recurrent cell's

    dtype = Cell.dtype     # the parameters' dtype, as for a recurrent cell
    _init = Cell._init     # PyTorch's U(−1/√H, 1/√H) initialisation

    @abstractmethod
    def leaf(self, x):
        """A leaf's state from its input x, (B, input_size) -> (B, hidden_size)."""

    @abstractmethod
    def node(self, children):
        """An internal node's state from its children's states (a list, left to right)."""

    def output(self, h):
        """What the network emits at the root, o: the root's state by default."""
        return h

    def loss(self, output, target):
        """L = loss(o, y), a scalar Tensor; run_tree(cell, tree, target=y) calls it."""
        raise NotImplementedError(f"{type(self).__name__} defines no loss(o, y)")

    @property
    def has_loss(self):
        return type(self).loss is not TreeCell.loss

    def __repr__(self):
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"


class RecursiveCell(TreeCell):
    """The recursive net of Goodfellow et al. Fig. 10.14 (see this module's docstring).

    Parameters, by symbol (the name, the shape):
        V       weight_leaf (H, I)             x → leaf state
        U, W    weight_left, weight_right (H, H)  left, right child → parent (arity 2, the book's)
        W1 … Wk weight_child1 … (H, H)         child k → parent, for another arity
        b       bias (H,)                      every node's bias
        W_out   weight_out (K, H)              root state → o, with output_size K
        c       bias_out (K,)                  o's bias
    With output_size the loss is cross-entropy over K classes (targets: class indices); without,
    o is the root's state and there is no loss.
    """
    target_kind = "classes"

    def __init__(self, input_size, hidden_size, output_size=None, arity=2, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, dtype)
        name = type(self).__name__
        if isinstance(arity, bool) or not isinstance(arity, (int, np.integer)) or arity < 1:
            raise ValueError(f"{name}: arity must be a positive integer (children per internal node), got {arity!r}")
        if output_size is not None and (isinstance(output_size, bool) or not isinstance(output_size, (int, np.integer))
                                        or output_size < 1):
            raise ValueError(f"{name}: output_size must be a positive integer or None, got {output_size!r}")
        self.arity, self.output_size = int(arity), None if output_size is None else int(output_size)
        H, K, k = self.hidden_size, self.output_size, self.arity
        # the book's U (left child) and W (right child) in a binary tree; W1 ... Wk for another arity
        self._child = ["weight_left", "weight_right"] if k == 2 else [f"weight_child{i}" for i in range(1, k + 1)]
        child_symbols = ["U", "W"] if k == 2 else [f"W{i}" for i in range(1, k + 1)]
        params = self._init(rng, (H, self.input_size), *[(H, H)] * k, (H,))
        self.weight_leaf = params[0]          # set in this order, so parameters() lists V, U, W, b, W_out, c
        for pname, p in zip(self._child, params[1:-1]):
            setattr(self, pname, p)
        self.bias = params[-1]
        self.symbols = {"weight_leaf": "V", **dict(zip(self._child, child_symbols)), "bias": "b"}
        self.acts_on = {"weight_leaf": "x", **{pname: slot for slot, pname in enumerate(self._child)}}
        if K is not None:
            self.weight_out, self.bias_out = self._init(rng, (K, H), (K,))
            self.symbols.update(weight_out="W_out", bias_out="c")
            self.acts_on["weight_out"] = "h"

    def leaf(self, x):
        return (x @ self.weight_leaf.T + self.bias).tanh()

    def node(self, children):
        pre = self.bias
        for h, c in zip(children, self._child):
            pre = pre + h @ getattr(self, c).T
        return pre.tanh()

    def output(self, h):
        return h if self.output_size is None else h @ self.weight_out.T + self.bias_out

    def loss(self, output, target):
        return mg.cross_entropy(output, target)

    @property
    def has_loss(self):
        return self.output_size is not None

    def __repr__(self):
        extra = "" if self.output_size is None else f", output_size={self.output_size}"
        extra += "" if self.arity == 2 else f", arity={self.arity}"
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}{extra})"


# --- running a cell over a tree -----------------------------------------------------------------

@dataclass
class TreeNode:
    """One node of a tree as run_tree computed it."""
    index: int               # its place in TreeResult.nodes: children first, the root last
    tree: Tree               # the node of the tree given
    children: tuple          # its children's indices, left to right
    parent: int | None       # its parent's index; None at the root
    depth: int               # edges up to the root: 0 at the root
    height: int              # edges down to its deepest leaf: 0 at a leaf
    span: tuple              # (first, last): the leaves under it, numbered 1, 2, ... left to right
    state: Tensor = field(repr=False)   # h, its gradient retained
    x: Tensor | None = field(default=None, repr=False)   # a leaf's input, (B, input_size)

    @property
    def is_leaf(self):
        return not self.children

    @property
    def word(self):
        return self.tree.word

    @property
    def label(self):
        """The book's name for its state: h(3) at leaf 3, h(1–4) over leaves 1 to 4."""
        first, last = self.span
        return f"h({first})" if first == last else f"h({first}–{last})"


@dataclass
class TreeResult:
    """What run_tree computed: the root's state and output, the loss, and every node."""
    state: Tensor            # the root's state, (B, hidden_size)
    output: Tensor           # o = cell.output(root state); the state itself for a cell without a head
    nodes: list              # TreeNode per node, children before their parent, the root last
    cell: TreeCell = field(repr=False)
    target: Tensor | None = None
    loss: Tensor | None = None   # the scalar to call backward() on: BPTS

    @property
    def states(self):
        """Every node's state, in `nodes` order (gradients retained)."""
        return [n.state for n in self.nodes]

    @property
    def root(self):
        return self.nodes[-1]

    @property
    def leaves(self):
        """The leaf nodes, left to right."""
        return [n for n in self.nodes if n.is_leaf]

    @property
    def depth(self):
        """The most nonlinearities between a leaf's input and the root's state: height + 1."""
        return self.root.height + 1


def run_tree(cell, tree, target=None):
    """Run `cell` over `tree`: leaf states from their inputs, then each internal node's from its
    children's, up to the root; its output o, and L = cell.loss(o, target) when a target is given.

    Every leaf input must be (B, input_size) with one B for the whole tree (B trees of one shape run
    together), or (input_size,), taken as B = 1.  target: what the cell's loss takes — for
    RecursiveCell integer class indices, an int or an array of shape (B,).
    """
    if not isinstance(cell, TreeCell):
        raise TypeError(f"run_tree: cell must be an rnn.TreeCell (e.g. rnn.RecursiveCell), got {type(cell).__name__}")
    name = type(cell).__name__
    if not isinstance(tree, Tree):
        raise TypeError(f"run_tree({name}): tree must be an rnn.Tree — rnn.tree(...) builds one from nested "
                        f"tuples — got {type(tree).__name__}")
    order = tree.nodes()
    nodes = _structure(name, cell, order)
    B = _check_leaves(cell, nodes)
    for n in nodes:
        with mg.scope(n.label):   # draw_graph(r.loss) boxes each node's ops under its name
            h = cell.leaf(n.x) if n.is_leaf else cell.node([nodes[c].state for c in n.children])
        if not isinstance(h, Tensor) or h.shape != (B, cell.hidden_size):
            got = f"shape {h.shape}" if isinstance(h, Tensor) else f"a {type(h).__name__}"
            raise ShapeError(f"run_tree({name}): {name}.{'leaf' if n.is_leaf else 'node'} returned {got} for "
                             f"{n.label}; a state is (B, hidden_size) = {(B, cell.hidden_size)}")
        n.state = h.retain_grad()
    root = nodes[-1].state
    result = TreeResult(root, cell.output(root), nodes, cell)
    if target is not None:
        result.target = _check_target(cell, target, B, result.output)
        result.loss = cell.loss(result.output, result.target)
    return result


def _structure(name, cell, order):
    """TreeNodes for the tree's nodes in `order` (children first), states not yet computed; a clear
    error for a node whose number of children the cell does not take, or a subtree used twice."""
    index = {t: i for i, t in enumerate(order)}
    parent = [None] * len(order)
    nodes, leaves = [], 0
    for i, t in enumerate(order):
        kids = tuple(index[c] for c in t.children)
        for c in kids:
            if parent[c] is not None:
                raise ValueError(f"run_tree({name}): one subtree (of {order[c]!r}) is a child of two nodes; "
                                 "a tree's nodes must be distinct objects — build the repeated part twice")
            parent[c] = i
        if t.is_leaf:
            leaves += 1
            span, height = (leaves, leaves), 0
        else:
            span = (nodes[kids[0]].span[0], nodes[kids[-1]].span[1])
            height = 1 + max(nodes[c].height for c in kids)
        nodes.append(TreeNode(i, t, kids, None, 0, height, span, None))
    for n in reversed(nodes):   # parents first: each depth from its parent's
        n.parent = parent[n.index]
        n.depth = 0 if n.parent is None else nodes[n.parent].depth + 1
        if cell.arity is not None and not n.is_leaf and len(n.children) != cell.arity:
            k = len(n.children)
            raise ValueError(f"run_tree({name}): the node {n.label} ({n.tree!r}, at depth {n.depth}) has {k} "
                             f"child{'ren' * (k != 1)}; {name} combines exactly {cell.arity}")
    return nodes


def _check_leaves(cell, nodes):
    """Each leaf's input as a (B, input_size) Tensor of the cell's dtype (n.x); returns B."""
    name, I = type(cell).__name__, cell.input_size
    batch = first = None
    for n in nodes:
        if not n.is_leaf:
            continue
        x, who = n.tree.x, f"leaf {n.span[0]}" + (f" ({n.word!r})" if n.word is not None else "")
        want = f"an array of shape (B, {I}) or ({I},)"
        if isinstance(x, _NOT_ARRAYS):
            raise TypeError(f"run_tree({name}): {who} must hold {want}, got a {type(x).__name__}")
        if not isinstance(x, Tensor):
            try:
                x = Tensor(x, dtype=cell.dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"run_tree({name}): {who} must hold {want}; its {type(x).__name__} "
                                f"does not convert: {e}") from None
        if x.ndim not in (1, 2) or x.shape[-1] != I:
            raise ShapeError(f"run_tree({name}): {who} has shape {x.shape}; the cell expects input_size={I}: "
                             f"(B, {I}) or ({I},)")
        if x.dtype != cell.dtype:
            raise TypeError(f"run_tree({name}): {who} has dtype {x.dtype}, the cell's parameters are "
                            f"{cell.dtype}; convert with x.astype('{cell.dtype}')")
        x = x.reshape(1, I) if x.ndim == 1 else x
        if batch is None:
            batch, first = x.shape[0], who
        elif x.shape[0] != batch:
            raise ShapeError(f"run_tree({name}): {who} has batch {x.shape[0]} (shape {x.shape}) but {first} "
                             f"has {batch}; every leaf of a tree holds the same batch")
        n.x = x
    if batch == 0:
        raise ShapeError(f"run_tree({name}): the leaves hold a batch of 0 trees; need B >= 1")
    return batch


def _check_target(cell, target, B, output):
    """The target as a Tensor the cell's loss takes, or a clear error naming run_tree and the shapes."""
    name = type(cell).__name__
    if not cell.has_loss:
        raise TypeError(f"run_tree({name}): a target was given but {cell!r} has no loss"
                        + (" (give it output_size=K for a K-class loss)" if isinstance(cell, RecursiveCell) else
                           "; define loss(self, o, y)"))
    classes = cell.target_kind == "classes"
    want = (f"integer class indices in [0, {output.shape[-1]}): an int, or an array of shape ({B},) for a batch"
            if classes else "a numeric array")
    if isinstance(target, _NOT_ARRAYS):
        raise TypeError(f"run_tree({name}): target must be {want}; got a {type(target).__name__}")
    try:
        y = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    except (TypeError, ValueError) as e:
        raise TypeError(f"run_tree({name}): target must be {want}; it does not convert: {e}") from None
    if not classes:
        return Tensor(y._data.astype(cell.dtype)) if y.dtype.kind == "f" and y.dtype != cell.dtype else y
    if y.dtype.kind not in "iu":   # 1.0 or True is no class index: refused, not silently cast
        raise TypeError(f"run_tree({name}): target must be {want}; got dtype {y.dtype} (shape {y.shape})")
    if y.shape == () and B == 1:
        y = Tensor(y._data.reshape(1))
    if y.shape != (B,):
        raise ShapeError(f"run_tree({name}): target has shape {y.shape}; the leaves hold a batch of {B}, "
                         f"so it must be {want}")
    ids, K = y._data, output.shape[-1]
    if ids.min() < 0 or ids.max() >= K:
        raise ValueError(f"run_tree({name}): target holds {ids.min() if ids.min() < 0 else ids.max()}; "
                         f"class indices lie in [0, {K})")
    return y
