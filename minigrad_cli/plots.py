"""Small line charts as standalone SVG: loss curves and gradient norms, with no plotting dependency."""
from __future__ import annotations

import math
from html import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _nice_ticks(lo, hi, n=5):
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _range(series, logy):
    """x and y limits over all series; on a log axis, y limits are whole powers of ten."""
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if not logy or y > 0]
    if not pts:
        return None
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ys = [math.log10(p[1]) if logy else p[1] for p in pts]
    ylo, yhi = min(ys), max(ys)
    if logy:
        ylo, yhi = math.floor(ylo), math.ceil(yhi)
    return xlo, (xhi if xhi > xlo else xlo + 1), ylo, (yhi if yhi > ylo else ylo + 1)


def _panel(x0, series, title, xlabel, ylabel, logy, w, h, limits):
    """One chart at horizontal offset x0: SVG elements as strings."""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 34, 44
    if limits is None:
        return [f'<text x="{x0 + w / 2}" y="{h / 2}" text-anchor="middle">no data</text>']
    xlo, xhi, ylo, yhi = limits
    fy = math.log10 if logy else (lambda y: y)
    sx = lambda x: x0 + pad_l + (x - xlo) / (xhi - xlo) * (w - pad_l - pad_r)
    sy = lambda v: pad_t + (1 - (v - ylo) / (yhi - ylo)) * (h - pad_t - pad_b)
    out = [f'<text x="{x0 + w / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{x0 + pad_l}" y="{pad_t}" width="{w - pad_l - pad_r}" height="{h - pad_t - pad_b}" '
           'fill="none" stroke="#999"/>',
           f'<text x="{x0 + w / 2}" y="{h - 8}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>',
           f'<text transform="translate({x0 + 14},{h / 2}) rotate(-90)" text-anchor="middle" '
           f'font-size="12">{escape(ylabel)}</text>']
    yticks = range(int(ylo), int(yhi) + 1, max(1, int(yhi - ylo) // 6 + 1)) if logy else _nice_ticks(ylo, yhi)
    for v in yticks:
        out.append(f'<line x1="{x0 + pad_l}" x2="{x0 + w - pad_r}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + pad_l - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{f"1e{v}" if logy else f"{v:.3g}"}</text>')
    for v in _nice_ticks(xlo, xhi):
        out.append(f'<text x="{sx(v):.1f}" y="{h - pad_b + 16}" text-anchor="middle" font-size="11">{v:g}</text>')
    for k, (name, (xs, ys)) in enumerate(series.items()):
        xs, ys = thin(xs, ys)
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(fy(y)):.1f}" for x, y in zip(xs, ys) if not logy or y > 0)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{x0 + w - pad_r - 6}" y="{pad_t + 16 + 16 * k}" text-anchor="end" '
                   f'font-size="12" fill="{colour}">{escape(name)}</text>')
    return out


def thin(xs, ys, most=400):
    """At most `most` points: bucket means, so a long loss curve stays a small file and keeps its shape."""
    if len(xs) <= most:
        return list(xs), list(ys)
    edges = [round(i * len(xs) / most) for i in range(most + 1)]
    return ([sum(xs[a:b]) / (b - a) for a, b in zip(edges, edges[1:])],
            [sum(ys[a:b]) / (b - a) for a, b in zip(edges, edges[1:])])


def chart(panels, width=460, height=320, share_y=False):
    """An SVG document with the panels side by side; each panel is a dict of _panel's arguments.

    share_y: one y range for all panels, so their heights can be compared.
    """
    limits = [_range(p["series"], p.get("logy", False)) for p in panels]
    if share_y and all(limits):
        ylo, yhi = min(lim[2] for lim in limits), max(lim[3] for lim in limits)
        limits = [(lim[0], lim[1], ylo, yhi) for lim in limits]
    body = []
    for i, (p, lim) in enumerate(zip(panels, limits)):
        body += _panel(i * width, p["series"], p.get("title", ""), p.get("xlabel", ""), p.get("ylabel", ""),
                       p.get("logy", False), width, height, lim)
    total = width * len(panels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
            f'viewBox="0 0 {total} {height}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n")
