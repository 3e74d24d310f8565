"""The generated source as statements: lines, and loops holding statements, rendered once."""
from __future__ import annotations

from dataclasses import dataclass


def ident(nid):
    """A node id as a Python identifier (the prefix of its variables and arrays)."""
    return "".join(c if c.isalnum() else "_" for c in nid)


@dataclass
class Loop:
    """`header` (a `for` line, without its colon) over the statements of `body`."""
    header: str
    body: list
    comment: str = ""


def render(statements, depth=0):
    """Source lines of `statements` (strings and Loops), indented `depth` levels."""
    out = []
    for s in statements:
        if isinstance(s, Loop):
            out.append("    " * depth + s.header + ":" + (f"  # {s.comment}" if s.comment else ""))
            out += render(s.body, depth + 1)
        else:
            out.append("    " * depth + s)
    return out


def transposed(text):
    """`text`.T, with a transpose of a transpose written as the value itself."""
    return text[:-2] if text.endswith(".T") else f"{text}.T"


def at(array, *index):
    """A reference to one element (or row) of `array`."""
    return f"{array}[{', '.join(index)}]"
