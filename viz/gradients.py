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
    """Maps norms to colours on a log10 scale of whole decades, at least two of them: a spread of 1.6x
    must not look like a vanishing gradient.  `span` = (low, high) fixes the scale instead (to
    compare pictures); the title states the max/min ratio of the norms drawn."""

    def __init__(self, norms, span=None):
        good = [n for n in norms if n is not None and n > 0 and math.isfinite(n)]
        self.empty = not good
        self.ratio = max(good) / min(good) if good else None
        if span is not None:
            low, high = (float(v) for v in span)
            if not 0 < low < high or not math.isfinite(high):
                raise ValueError(f"grad scale must be (low, high) with 0 < low < high, got {span!r}")
            self.lo, self.hi = math.log10(low), math.log10(high)
            return
        lo = math.floor(math.log10(min(good))) if good else 0
        hi = math.ceil(math.log10(max(good))) if good else 0
        while hi - lo < 2:  # widen to two decades, a decade below first: the norms sit mid-scale
            lo, hi = (lo - 1, hi) if hi - lo == 1 or (hi - lo) % 2 else (lo, hi + 1)
        self.lo, self.hi = lo, hi

    def fraction(self, norm):
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

    def title(self):
        ratio = "" if self.ratio is None else f"; max/min = {number(self.ratio)}"
        return f"‖∂L/∂state‖, log scale{ratio}"

    def ticks(self):
        """(colour, text) for the colour bar's cells, low to high: at whole and half decades."""
        decades = self.hi - self.lo
        step = 0.5 if decades <= 5 else math.ceil(decades / 10)
        n = int(round(decades / step)) + 1
        out = []
        for i in range(n):
            f = i / (n - 1)
            exponent = self.lo + f * decades
            text = f"1e{round(exponent)}" if abs(exponent - round(exponent)) < 1e-9 else number(10 ** exponent)
            out.append((interpolate(STYLE["gradient"]["stops"], f), text))
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
