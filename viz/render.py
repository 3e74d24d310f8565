"""Rendering a drawing to a file, with a clear message when Graphviz's `dot` is missing."""
from __future__ import annotations

import subprocess
from pathlib import Path

import graphviz

INSTALL_HINT = ("Install the Graphviz package, which provides `dot`: Debian/Ubuntu `sudo apt-get install graphviz`, "
                "Fedora `sudo dnf install graphviz`, macOS `brew install graphviz`, conda `conda install graphviz`. "
                "(The Python package `graphviz` only writes DOT text; it needs that program to render.)")


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` program is not installed or not on PATH."""


def render(digraph, path, format="svg"):
    """Write `digraph` to `path` as `format` (svg, png, pdf, ...) and return the path written.

    The DOT source is always saved next to it (same name, suffix .gv) first, so
    a failed render leaves something to render later with
    ``dot -T<format> file.gv -o file.<format>``.
    """
    path = Path(path)
    if path.suffix.lstrip(".").lower() != format.lower():
        path = path.with_name(path.name + "." + format)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_suffix(".gv")
    source.write_text(digraph.source, encoding="utf-8")
    try:
        data = digraph.pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFound(
            f"render: cannot make {path.name}: Graphviz's `dot` program was not found on PATH. {INSTALL_HINT} "
            f"The DOT source was saved to {source}; render it later with "
            f"`dot -T{format} {source} -o {path}`.") from None
    except subprocess.CalledProcessError as e:
        stderr = (e.stderr or b"").decode("utf-8", "replace").strip()
        raise RuntimeError(f"render: `dot -T{format}` failed on {source}: {stderr or e}") from None
    path.write_bytes(data)
    return path
