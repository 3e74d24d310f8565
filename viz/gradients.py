"""Gradient norms per time step, and their colours on a log scale.

After ``loss.backward()``, ‖∂L/∂h(t)‖ along the unrolled chain shows how much
of the loss's gradient reaches step t: it shrinks geometrically when the
recurrence's Jacobians are contractive (vanishing) and grows when they are
expansive (exploding) — Goodfellow et al. §10.7.  A log scale makes both
visible at once.
"""
from __future__ import annotations

import math

import numpy as np

from .labels import number
from .style import STYLE


def state_grad_norms(graph, states=None):
    """{node id: ‖grad‖ or None} for the initial state and every step's state output.

    Gradients come from `states` (RunResult.states: per step, the state tuple)
    when given, since a backend other than the graph evaluator may not fill
    `graph.tensors`; otherwise from `graph.tensors`.
    """
    tensors = getattr(graph, "tensors", None) or {}
    norms = {}
    for ids in [graph.state0] + list(graph.state_out):
        for nid in ids:
            norms[nid] = _norm(tensors.get(nid))
    if states:
        for ids, tup in zip(graph.state_out, states):
            tup = tup if isinstance(tup, (tuple, list)) else (tup,)
            for nid, t in zip(ids, tup):
                if _norm(t) is not None or norms.get(nid) is None:
                    norms[nid] = _norm(t)
    return norms


def _norm(tensor):
    grad = getattr(tensor, "grad", None)
    return None if grad is None else float(np.linalg.norm(np.asarray(grad, dtype=np.float64).ravel()))


class LogScale:
    """Maps norms to colours between the smallest and largest positive finite norm, in log10."""

    def __init__(self, norms):
        good = [n for n in norms if n is not None and n > 0 and math.isfinite(n)]
        self.lo = math.log10(min(good)) if good else 0.0
        self.hi = math.log10(max(good)) if good else 0.0
        self.empty = not good

    def fraction(self, norm):
        if self.hi == self.lo:
            return 1.0
        return min(1.0, max(0.0, (math.log10(norm) - self.lo) / (self.hi - self.lo)))

    def color(self, norm):
        g = STYLE["gradient"]
        if norm is None:
            return g["missing"]
        if not math.isfinite(norm):
            return g["nonfinite"]
        if norm == 0:
            return g["zero"]
        return interpolate(g["stops"], self.fraction(norm))

    def ticks(self):
        """(colour, text) for the colour bar's cells, low to high."""
        n = STYLE["gradient"]["bar_cells"]
        out = []
        for i in range(n):
            f = i / (n - 1)
            value = 10 ** (self.lo + f * (self.hi - self.lo))
            out.append((interpolate(STYLE["gradient"]["stops"], f), number(value)))
        return out


def interpolate(stops, f):
    """The colour a fraction `f` of the way along the hex colour `stops`."""
    pos = f * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    a, b, w = _rgb(stops[i]), _rgb(stops[i + 1]), pos - i
    return "#" + "".join(f"{round(x + (y - x) * w):02X}" for x, y in zip(a, b))


def _rgb(hexcolor):
    return tuple(int(hexcolor[k:k + 2], 16) for k in (1, 3, 5))


def text_color(fill):
    """Black or white, whichever reads better on `fill` (WCAG relative luminance)."""
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in _rgb(fill))
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 else "#FFFFFF"
