"""Label text: user-chosen names made safe for Graphviz HTML-like labels.

Every label is an HTML-like label (``<...>``), so a name is always text and
never markup: ``& < > "`` become entities, a newline becomes a line break,
other control characters are shown as ``\\xNN`` (XML, and so SVG, cannot hold
them).  Backslashes are doubled: Graphviz expands ``\\N`` (the node's id),
``\\G`` and ``\\l`` even inside HTML-like labels, and even when written as the
entity ``&#92;``; only ``\\\\`` comes out as one literal backslash.
"""
from __future__ import annotations

import math

import numpy as np

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
MAX_CHARS = 80  # a name longer than this is cut, so one node cannot stretch the whole drawing


def _char(c):
    if c == "\\":
        return "\\\\"
    if c in _ENTITIES:
        return _ENTITIES[c]
    if c == "\t":
        return " "
    code = ord(c)
    if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or code in (0xFFFE, 0xFFFF):
        return f"\\\\x{code:02x}" if code < 0x100 else f"\\\\u{code:04x}"  # shown as \\xNN
    return c


def escape(text):
    """`text` as HTML-label content; newlines become ``<br/>``."""
    text = str(text)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS - 1] + "…"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return '<br align="center"/>'.join("".join(_char(c) for c in line) for line in lines)


def html(*rows, bold_first=True, size=None, color=None):
    """An HTML-like label of text rows (each escaped); the first row bold, later ones smaller."""
    from .style import STYLE
    small = STYLE["font"]["small"]
    parts = []
    for i, row in enumerate(r for r in rows if r is not None and r != ""):
        text = escape(row)
        if i == 0:
            text = f"<b>{text}</b>" if bold_first else text
            if size:
                text = f'<font point-size="{size}">{text}</font>'
        else:
            text = f'<font point-size="{small}">{text}</font>'
        parts.append(text)
    body = "<br/>".join(parts) or " "
    if color:
        body = f'<font color="{color}">{body}</font>'
    return f"<{body}>"


def shape_text(shape):
    """A shape as Python writes it, except () which reads better as "scalar"."""
    shape = tuple(int(d) for d in shape)
    return "scalar" if shape == () else str(shape)


def number(x):
    """A short, deterministic rendering of a float: 4 significant digits."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}".replace("e-0", "e-").replace("e+0", "e+").replace("e+", "e")


def scalar(value):
    """A scalar array's value as text, or None when it is not a scalar."""
    if value is None:
        return None
    arr = np.asarray(value)
    return number(arr.reshape(())) if arr.size == 1 and arr.dtype.kind in "fiub" else None
