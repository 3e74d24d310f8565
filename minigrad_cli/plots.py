"""Small line charts as standalone SVG: loss curves and gradient norms, with no plotting dependency."""
from __future__ import annotations

import math
from html import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _ticks(lo, hi, n=5):
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _panel(x0, series, title, xlabel, ylabel, logy, w, h):
    """One chart at horizontal offset x0: SVG elements as strings."""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 34, 44
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if not logy or y > 0]
    if not pts:
        return [f'<text x="{x0 + w / 2}" y="{h / 2}" text-anchor="middle">no data</text>']
    fy = (lambda y: math.log10(y)) if logy else (lambda y: y)
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = min(fy(p[1]) for p in pts), max(fy(p[1]) for p in pts)
    xhi, yhi = (xhi if xhi > xlo else xlo + 1), (yhi if yhi > ylo else ylo + 1)
    sx = lambda x: x0 + pad_l + (x - xlo) / (xhi - xlo) * (w - pad_l - pad_r)
    sy = lambda y: pad_t + (1 - (fy(y) - ylo) / (yhi - ylo)) * (h - pad_t - pad_b)
    out = [f'<text x="{x0 + w / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{x0 + pad_l}" y="{pad_t}" width="{w - pad_l - pad_r}" height="{h - pad_t - pad_b}" '
           'fill="none" stroke="#999"/>',
           f'<text x="{x0 + w / 2}" y="{h - 8}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>',
           f'<text transform="translate({x0 + 14},{h / 2}) rotate(-90)" text-anchor="middle" '
           f'font-size="12">{escape(ylabel)}</text>']
    for v in _ticks(ylo, yhi):
        label = f"1e{v:.1f}" if logy else f"{v:.3g}"
        y = pad_t + (1 - (v - ylo) / (yhi - ylo)) * (h - pad_t - pad_b)
        out.append(f'<text x="{x0 + pad_l - 4}" y="{y + 4}" text-anchor="end" font-size="11">{label}</text>')
    for v in _ticks(xlo, xhi):
        out.append(f'<text x="{sx(v)}" y="{h - pad_b + 16}" text-anchor="middle" font-size="11">{v:.4g}</text>')
    for k, (name, (xs, ys)) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if not logy or y > 0)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{x0 + w - pad_r - 6}" y="{pad_t + 16 + 16 * k}" text-anchor="end" '
                   f'font-size="12" fill="{colour}">{escape(name)}</text>')
    return out


def chart(panels, width=460, height=320):
    """An SVG document with the panels side by side; each panel is a dict of _panel's arguments."""
    body = []
    for i, p in enumerate(panels):
        body += _panel(i * width, p["series"], p.get("title", ""), p.get("xlabel", ""), p.get("ylabel", ""),
                       p.get("logy", False), width, height)
    total = width * len(panels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
            f'viewBox="0 0 {total} {height}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n")
