"""examples/recursive_sentiment.py, run in full as a user would, and held to what its docstring promises."""
import html
import pathlib
import re
import runpy
import shutil

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "recursive_sentiment.py"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")]


def test_the_recursive_net_reads_sentiment_off_the_tree(tmp_path, capsys):
    runpy.run_path(str(EXAMPLE), run_name="example")["main"](["--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(\S.*?)\s+(\d\.\d{3})$", out, re.M)}
    majority, words, net = (rows["majority class"], rows["sign of the words, tree ignored"],
                            rows["recursive net, H = 24"])
    # Seeds 0–8 reach 0.95–0.98 against a majority of 0.50 and a word count's 0.54.
    assert net > majority + 0.3 and net > words + 0.25, out
    assert re.search(r"not \(very good\)\s+0\.\d+", out), out
    svg = html.unescape((tmp_path / "recursive-not-very-good.svg").read_text(encoding="utf-8"))
    assert "not (very good)" in svg and "h(2–3)" in svg and "‖∂L/∂h‖" in svg
