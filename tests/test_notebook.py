"""examples/chapter10.ipynb, executed top to bottom as a reader would run it: no cell raises, the numbers
its text claims hold, and its pictures are SVG of what the text says they show.

The kernel is this interpreter (the venv minigrad is installed in), whatever kernelspecs the machine has:
a kernelspec named python3 whose command is sys.executable is put first on JUPYTER_PATH, and the
executed notebook reports its own sys.executable to check it.
"""
import html
import json
import pathlib
import re
import shutil
import sys

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "chapter10.ipynb"


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The executed notebook's code cells by tag, and the interpreter its kernel ran."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    work = tmp_path_factory.mktemp("chapter10")
    spec = work / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (the test's interpreter)", "language": "python"}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)", metadata={"tags": ["interpreter"]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(work / "jupyter"))
        # allow_errors=False: a cell that raises fails here, naming the cell and the error
        nbclient.NotebookClient(nb, kernel_name="python3", timeout=600, startup_timeout=120,
                                resources={"metadata": {"path": str(work)}}).execute()
    cells = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
            for tag in cell.metadata.get("tags", []):
                cells[tag] = cell
    return cells


def text(cells, tag):
    return "".join(o.get("text", "") for o in cells[tag].outputs if o.output_type == "stream")


def number(cells, tag, pattern):
    found = re.search(pattern, text(cells, tag))
    assert found, f"{tag}: {pattern!r} not in {text(cells, tag)!r}"
    return float(found.group(1))


def svg(cells, tag):
    images = [o.data["image/svg+xml"] for o in cells[tag].outputs
              if o.output_type in ("execute_result", "display_data") and "image/svg+xml" in o.data]
    assert len(images) == 1, f"{tag}: expected one SVG picture, got {len(images)}"
    assert images[0].lstrip().startswith(("<?xml", "<svg", "<!--")) and "</svg>" in images[0]
    return html.unescape(images[0])



@pytest.mark.slow
def test_notebook_runs_in_this_interpreter(executed):
    assert text(executed, "interpreter").strip() == sys.executable


@pytest.mark.slow
def test_metrics_meet_what_the_text_claims(executed):
    c = executed
    assert number(c, "fig103-metric", r"held-out accuracy ([\d.]+)") >= 0.95
    assert number(c, "bptt-check", r"eq\. 10\.18: ([\d.e+-]+)") < 1e-12
    assert number(c, "fig105-metric", r"held-out accuracy ([\d.]+)") >= 0.9
    assert number(c, "fig106-metric", r"teacher-forced ([\d.]+)") >= 0.99
    assert number(c, "fig106-metric", r"free-running ([\d.]+)") >= 0.99
    assert number(c, "fig106-metric", r"free-running: ([\d.]+)") >= 0.95
    mse, zeros = (number(c, "vec2seq-metric", p) for p in (r"squared error ([\d.]+)", r"zeros: ([\d.]+)"))
    assert mse < 0.1 * zeros
    plain, conditional = (number(c, "fig1010-metric", p) for p in (r"Fig\. 10\.3 ([\d.]+)", r"Fig\. 10\.10 ([\d.]+)"))
    assert conditional < plain - 0.1
    one_way, both = (number(c, "fig1011-metric", p) for p in (r"left to right ([\d.]+)", r"bidirectional ([\d.]+)"))
    assert one_way > 0.3 and both < 0.05
    assert number(c, "fig1012-metric", r"reversed exactly: ([\d.]+)") >= 0.9
    assert "a b c d e -> e d c b a eos" in text(c, "attention-picture")
    assert re.search(r"chain: depth 8\s+balanced: depth 4", text(c, "fig1014-depth"))
    for rho in ("0.7", "1.3"):
        assert number(c, "linear-metric", rf"rho = {rho}: .*rho\^\(T-t\): ([\d.e+-]+)") < 1e-10
    rows = dict(re.findall(r"^(tanh|lstm)\s+([\d.]+)", text(c, "adding-metric"), re.M))
    assert float(rows["tanh"]) > 0.8 / 6 and float(rows["lstm"]) < 0.1 / 6, rows   # the baseline is 1/6
    assert number(c, "esn-metric", r"NRMSE on steps 1500-2000: ([\d.]+)") < 0.01
    assert "gradcheck: True" in text(c, "gradcheck-metric")
    assert number(c, "gradcheck-metric", r"worst relative error ([\d.e+-]+)") < 1e-6
    failed = re.findall(r"says ([\d.-]+), central differences ([\d.-]+)", text(c, "gradcheck-fails"))
    assert "gradcheck of the wrong op: False" in text(c, "gradcheck-fails") and len(failed) == 2
    assert all(float(num) == pytest.approx(2 * float(ana), rel=1e-3) for ana, num in failed)
    assert "8 random cases passed" in text(c, "hypothesis")
    before, after = (number(c, "clip-metric", p) for p in (r"gradient norm ([\d.e+-]+) ->", r"-> ([\d.]+);"))
    assert before > 1e4 and after == pytest.approx(1.0)
    assert number(c, "clip-metric", r"cosine\(before, after\) = ([\d.]+)") == pytest.approx(1.0)


@pytest.mark.slow
def test_pictures_show_what_the_text_says(executed):
    c = executed
    fig103 = svg(c, "fig103-picture")
    assert "RNN unrolled over T = 4 steps" in fig103 and "L = Σ L(t)" in fig103
    assert "the output feeds back" in svg(c, "fig104-picture")
    fig105 = svg(c, "fig105-picture")
    assert "L = L(4)" in fig105 and "L(1)" not in fig105          # one loss, at the end
    assert "teacher-forced" not in svg(c, "fig106-test") and "argmax" in svg(c, "fig106-test")
    assert "y(1)" in svg(c, "fig106-train") and "o(1)" in svg(c, "fig106-test")
    assert "read by every step" in svg(c, "vec2seq-picture")
    fig1010 = svg(c, "fig1010-picture")
    assert "y(t−1), teacher-forced" in fig1010 and "W · h(t−1)" in fig1010
    assert "h_b(5)" in svg(c, "fig1011-picture")                  # the backward chain starts after step 4
    assert "attention over every encoder output" in svg(c, "fig1012-picture")
    heat = svg(c, "attention-picture")
    values = [float(v) for v in re.findall(r">(\d\.\d\d)<", heat)]
    grid = np.array(values[:25]).reshape(5, 5)  # outputs e d c b a against inputs a b c d e
    assert list(grid.argmax(axis=1)) == [4, 3, 2, 1, 0]
    assert "layer 2" in svg(c, "fig1013a-picture")
    assert "deep transition, rolled" in svg(c, "fig1013b-picture") and "h·Wᵀ" not in svg(c, "fig1013b-picture")
    assert "deep transition, skip, rolled" in svg(c, "fig1013c-picture") and "h·Wᵀ" in svg(c, "fig1013c-picture")
    tree = svg(c, "fig1014-picture")
    assert "RecursiveCell over 3 leaves" in tree and "not (very good)" in tree and "‖∂L/∂h‖" in tree
    for tag in ("vanish-picture", "explode-picture"):
        assert "log scale" in svg(c, tag)
    assert svg(c, "esn-picture").count("(frozen)") == 3
    lstm, gru = svg(c, "lstm-picture"), svg(c, "gru-picture")
    assert "LSTMCell, rolled" in lstm and all(f">{gate}<" in lstm for gate in "ifgo")
    assert "GRUCell, rolled" in gru and all(f">{gate}<" in gru for gate in "rzn")
