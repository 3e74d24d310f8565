"""The `minigrad` command end to end, on tiny settings, in a temporary folder."""
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

import minigrad as mg
from minigrad_cli import charlm
from minigrad_cli.main import main
from minigrad_cli.text import zen_of_python

TINY = ["--hidden", "8", "--seq-len", "8", "--batch", "2", "--backend", "graph", "--quiet",
        "--sample-every", "1000"]


@pytest.fixture
def zen(tmp_path):
    path = tmp_path / "zen.txt"
    path.write_text(zen_of_python(), encoding="utf-8")
    return path


def train(text, ckpt, steps, *extra):
    return main(["train", "--text", str(text), "--checkpoint", str(ckpt), "--steps", str(steps), *TINY, *extra])


def saved_losses(ckpt):
    return mg.load(ckpt)["losses"]


def test_train_then_sample(zen, tmp_path, capsys):
    ckpt = tmp_path / "model.npz"
    assert train(zen, ckpt, 3) == 0
    meta = mg.load(ckpt)
    assert meta["step"] == 3 and len(meta["losses"]) == 3 and meta["cell"] == "lstm"
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(ckpt), "--length", "30", "--prime", "Beautiful", "--seed", "1"]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    assert text.startswith("Beautiful") and len(text) == len("Beautiful") + 30
    assert set(text) <= set(zen_of_python())


@pytest.mark.parametrize("backend", ["graph", "auto"])  # auto: the step compiled whole (rnn.kernels.training)
def test_resume_continues_exactly(zen, tmp_path, capsys, backend):
    straight, resumed = tmp_path / "a.npz", tmp_path / "b.npz"
    opts = ["--optim", "adam", "--backend", backend]
    assert train(zen, straight, 8, *opts) == 0
    assert train(zen, resumed, 5, *opts) == 0  # crosses a stream restart (6 windows) on resume
    assert train(zen, resumed, 8, *opts, "--resume") == 0
    assert saved_losses(resumed) == saved_losses(straight)
    assert capsys.readouterr().out.count("(backend graph)" if backend == "graph" else "(backend numba, whole step)") == 3


def test_train_with_an_embedding_compiles_its_step_whole(zen, tmp_path, capsys):
    assert train(zen, tmp_path / "m.npz", 2, "--embed", "4", "--backend", "auto") == 0
    assert "(backend numba, whole step)" in capsys.readouterr().out


def test_ctrl_c_saves_a_checkpoint(zen, tmp_path, monkeypatch, capsys):
    real_step = charlm.Trainer.train_step

    def interrupted(self):
        if self.step == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(charlm.Trainer, "train_step", interrupted)
    ckpt = tmp_path / "model.npz"
    assert train(zen, ckpt, 10) == 130
    assert mg.load(ckpt)["step"] == 2
    assert "interrupted at step 2" in capsys.readouterr().err


def _bad(capsys, argv):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "empty"),
    (b"\x00\x01\x02binary\x00data" * 10, "binary"),
    ("caf\u00e9 ".encode("latin-1") * 20, "not valid UTF-8"),
    (b"8 chars.", "needs 9 (--seq-len + 1)"),  # TINY's --seq-len 8: one window is 9 characters
])
def test_bad_text_files(tmp_path, capsys, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    code, err = _bad(capsys, ["train", "--text", str(path), "--steps", "1", *TINY])
    assert code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "--text", "x", "--cell", "transformer"], "invalid choice"),
    (["train", "--task", "sorting"], "invalid choice"),
    (["train", "--text", "x", "--clip", "huge:3"], "--clip"),
    (["gradcheck", "--cell", "nosuchmodule:Cell"], "cannot load cell"),
])
def test_bad_options(capsys, argv, message):
    code, err = _bad(capsys, argv)
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_checkpoint_from_a_different_model_is_refused_and_kept(zen, tmp_path, capsys):
    ckpt = tmp_path / "model.npz"
    assert train(zen, ckpt, 2) == 0
    before = ckpt.read_bytes()
    code, err = _bad(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "4", "--resume",
                              *TINY, "--hidden", "16"])  # the later --hidden wins
    assert code == 2 and "different model" in err and "hidden" in err
    other = tmp_path / "other.txt"
    other.write_text("completely different letters here: qqq zzz " * 5)
    code, err = _bad(capsys, ["train", "--text", str(other), "--checkpoint", str(ckpt), "--steps", "4",
                              "--resume", *TINY])
    assert code == 2 and "vocabulary" in err
    code, err = _bad(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "4", *TINY])
    assert code == 2 and "--resume" in err
    assert ckpt.read_bytes() == before


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    code, err = _bad(capsys, ["viz", "--out", str(blocker / "sub")])
    assert code == 2 and "cannot write" in err
    assert blocker.read_text() == "mine"


def test_viz_writes_svgs(tmp_path, capsys):
    assert main(["viz", "--cell", "gru", "--steps", "3", "--detail", "ops", "--out", str(tmp_path)]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 2
    for p in paths:
        assert ET.parse(p).getroot().tag.endswith("svg")


def test_gradcheck_builtin_and_custom(tmp_path, monkeypatch, capsys):
    assert main(["gradcheck", "--cell", "elman", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 cases passed" in out and "worst relative error" in out
    (tmp_path / "my_cells.py").write_text(
        "import rnn\nimport minigrad as mg\nfrom minigrad.nn import Parameter\nimport numpy as np\n"
        "class Broken(rnn.Cell):\n"
        "    def __init__(self, i, h, rng=None):\n"
        "        super().__init__(i, h)\n"
        "        self.w = Parameter(np.full((h, i), 0.3))\n"
        "    def step(self, x, h):\n"
        "        return (x @ self.w.T).tanh() + mg.stop_gradient(h) * 0.5\n")
    monkeypatch.chdir(tmp_path)
    assert main(["gradcheck", "--cell", "my_cells:Broken", "--examples", "3"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_kernel_prints_the_generated_source_of_a_builtin_and_a_custom_cell(tmp_path, monkeypatch, capsys):
    from rnn.kernels import kernel_source
    assert main(["kernel", "--cell", "gru", "--batch", "8", "--dtype", "float32", "--hidden", "5"]) == 0
    out = capsys.readouterr().out
    assert out == kernel_source(charlm.CELLS["gru"](32, 5), batch=8, dtype="float32")
    assert "sigmoid_f32 as _sigmoid" in out and "h(t-1) @ weight_hh.T" in out
    (tmp_path / "kernel_cells.py").write_text(
        "import rnn\nimport minigrad as mg\nfrom minigrad.nn import Parameter\nimport numpy as np\n"
        "class Scaled(rnn.Cell):\n"
        "    def __init__(self, i, h):\n"
        "        super().__init__(i, h)\n"
        "        self.w = Parameter(np.full((h, i), 0.3))\n"
        "    def step(self, x, h):\n"
        "        return (x @ self.w.T).tanh() * h\n"
        "class Peak(Scaled):\n"
        "    def step(self, x, h):\n"
        "        return h[::-1] + x @ self.w.T\n")
    monkeypatch.chdir(tmp_path)
    assert main(["kernel", "--cell", "kernel_cells:Scaled"]) == 0
    assert "x(t) @ w.T" in capsys.readouterr().out
    assert main(["kernel", "--cell", "kernel_cells:Peak"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kernel_cells:Peak" in err and "op 'getitem'" in err


def test_adding_task_runs_and_reports_baseline(capsys):
    assert main(["train", "--task", "adding", "--T", "6", "--cell", "elman", "--hidden", "4", "--steps", "3",
                 "--batch", "4", "--backend", "graph", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out loss" in out and "baseline 0.1667" in out


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def test_demo_writes_pictures_and_index(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--seconds", "2", "--backend", "graph", "--adding-steps", "5"]) == 0
    parser = _Images()
    page = (out / "index.html").read_text(encoding="utf-8")
    parser.feed(page)
    assert len(parser.srcs) >= 12
    assert {"adding-gradient-flow.svg", "adding-elman-unrolled-grad.svg", "adding-lstm-unrolled-grad.svg"} <= set(parser.srcs)
    assert re.search(r"‖∂L/∂h\(1\)‖ / ‖∂L/∂h\(50\)‖: LSTM [0-9.e+-]+, tanh RNN [0-9.e+-]+\.", page)
    for src in parser.srcs:
        assert ET.parse(out / src).getroot().tag.endswith("svg")
    printed = capsys.readouterr().out
    assert str(out / "index.html") in printed


def test_task_generators_match_their_definitions():
    from minigrad_cli.tasks import adding, copy_memory
    rng = np.random.default_rng(0)
    xs, ys = adding(10, 50, rng)
    marks = xs[..., 1]
    assert (marks.sum(0) == 2).all() and (marks[:5].sum(0) == 1).all()
    assert np.allclose(ys[:, 0], (xs[..., 0] * marks).sum(0))
    xs, ys = copy_memory(5, 3, rng)
    ids = xs.argmax(-1)
    assert xs.shape == (25, 3, 10) and (ys[-10:] == ids[:10]).all() and (ids[14] == 9).all()
    assert json.dumps(ys.tolist())  # integer targets


def test_missing_graphviz_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    code, err = _bad(capsys, ["viz", "--out", str(tmp_path / "pics")])
    assert code == 2 and "apt-get install graphviz" in err and len(err.splitlines()) == 1
    assert list((tmp_path / "pics").glob("*.gv"))  # the DOT source is kept to render later


def test_long_curves_are_thinned_to_bucket_means():
    from minigrad_cli.plots import thin
    xs, ys = thin(list(range(1000)), [float(i % 2) for i in range(1000)], most=100)
    assert len(xs) == len(ys) == 100 and all(y == 0.5 for y in ys) and xs[0] == 4.5


@pytest.mark.slow
def test_bench_networks_prints_a_row_per_network(capsys):
    assert main(["bench", "--networks", "--quick", "--no-graph", "--dtypes", "float64"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    body = [r for r in rows if r and r[0] in ("fig103", "fig1011", "attend")]
    assert [(r[0], r[1], r[2]) for r in body] == [("fig103", "float64", "100,1,32,32,32"),
                                                  ("fig1011", "float64", "100,1,32,32,32"),
                                                  ("attend", "float64", "100,1,32,32,32")]
    assert all(float(r[3]) > 0 for r in body)


def test_bench_prints_a_table_row_per_configuration(capsys):
    assert main(["bench", "--cells", "elman,gru", "--sizes", "3,1,2,2", "--dtypes", "float64", "--no-graph"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    body = [r for r in rows if r and r[0] in ("elman", "gru")]
    assert [(r[0], r[1], r[2]) for r in body] == [("elman", "float64", "3,1,2,2"), ("gru", "float64", "3,1,2,2")]
    assert all(float(r[3]) > 0 for r in body)  # a measured time in ms, whatever it is


@pytest.mark.parametrize("module", ["minigrad_cli", "minigrad_cli.main"])
def test_the_command_runs_as_a_module(module):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage: minigrad"), run.stderr
