"""The runnable examples under examples/: each trains on its toy task, prints its metric, writes
its pictures.  Run here in full, as a user would, and held to what their docstrings promise."""
import pathlib
import re
import runpy
import shutil

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")]


def run_example(name, tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")["main"]
    main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = dict((m.group(1).strip(), float(m.group(2)))
                for m in re.finditer(r"^(.+?)\s+(\d+\.\d+)\s+(?:numba|graph)\s+\d+\.\d+$", out, re.M))
    return rows, out


def svg_text(path):
    import html
    return html.unescape(path.read_text(encoding="utf-8"))


def test_deep_rnn_example_learns_with_all_three_depths(tmp_path, capsys):
    rows, out = run_example("deep_rnn", tmp_path, capsys)
    assert set(rows) == {"a-stacked", "b-deep-transition", "c-deep-transition-skip"}
    assert all(mse < 0.1 * (1 / 9) for mse in rows.values()), out   # a tenth of predicting 0
    assert "layer 2" in svg_text(tmp_path / "deep-a-stacked-rolled.svg")
    assert "h·Wᵀ" in svg_text(tmp_path / "deep-c-deep-transition-skip-rolled.svg")       # the skip
    assert "h·Wᵀ" not in svg_text(tmp_path / "deep-b-deep-transition-rolled.svg")


def test_bidirectional_example_beats_the_floor_of_reading_one_way(tmp_path, capsys):
    rows, out = run_example("bidirectional", tmp_path, capsys)
    one_way, both = rows["left to right (GRU)"], rows["bidirectional (GRU, GRU)"]
    assert one_way > 0.3 and both < 0.05, out
    assert "1-step advance" in svg_text(tmp_path / "bidirectional-rolled.svg")
    assert "h_b(5)" in svg_text(tmp_path / "bidirectional-unrolled.svg")     # the backward chain starts at T+1


def test_echo_state_example_predicts_mackey_glass(tmp_path, capsys):
    rows, out = run_example("echo_state", tmp_path, capsys)
    assert rows["ridge"] < 0.01 and rows["gradient"] < 0.1, out
    assert svg_text(tmp_path / "echo-state-rolled.svg").count("(frozen)") == 3


def test_seq2seq_example_reverses_held_out_sequences_and_draws_the_anti_diagonal(tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLES / "seq2seq.py"), run_name="example")["main"]
    main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    acc = float(re.search(r"held-out exact-sequence accuracy ([0-9.]+)", out).group(1))
    assert acc > 0.9, out
    assert "decode(a b c d e) = e d c b a eos" in out
    heat = svg_text(tmp_path / "seq2seq-attention.svg")
    values = [float(v) for v in re.findall(r">(\d\.\d\d)<", heat)]
    grid = np.array(values[:25]).reshape(5, 5)             # target e d c b a against source a b c d e
    assert np.all(np.argmax(grid, axis=1) == [4, 3, 2, 1, 0])
    assert "attention over every encoder output" in svg_text(tmp_path / "seq2seq-decoded.svg")
