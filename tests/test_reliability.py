"""Bad input is one line and exit code 2 (a named exception for the API), and nothing the user had is lost.

Each case from the issue tracker sits beside the good input it is closest to.
"""
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import checkpoint, nn, optim
from minigrad_cli import charlm
from minigrad_cli.demo import outputs as demo_outputs
from minigrad_cli.errors import UsageError
from minigrad_cli.main import main
from minigrad_cli.text import zen_of_python
from mlp_helpers import MLP

TINY = ["--hidden", "4", "--seq-len", "8", "--batch", "2", "--backend", "graph", "--quiet", "--sample-every", "1000"]


@pytest.fixture
def zen(tmp_path):
    path = tmp_path / "zen.txt"
    path.write_text(zen_of_python(), encoding="utf-8")
    return path


@pytest.fixture
def trained_ckpt(zen, tmp_path):
    """A character-model checkpoint at step 3."""
    ckpt = tmp_path / "model.npz"
    assert main(["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "3", *TINY]) == 0
    return ckpt


def run(capsys, argv):
    """(exit code, stdout, stderr) of the command."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys, argv, *words):
    """Assert the command exits 2 with one line on stderr holding all of `words`; return that line."""
    code, _, err = run(capsys, argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("minigrad: error: ")
    for w in words:
        assert w in err, (w, err)
    return err


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`, to prove none was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# --- 1. command options ----------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"),
    ("--clip", "norm:inf"), ("--clip", "value:inf"), ("--clip", "value:nan"),
    ("--embed", "-1"), ("--seed", "-1"),
])
def test_bad_train_options_are_one_line(zen, tmp_path, capsys, option, value):
    ckpt = tmp_path / "model.npz"
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "2", *TINY, option, value],
            option, repr(value))
    assert not ckpt.exists()


def test_the_good_options_beside_them_train(zen, tmp_path, capsys):
    ckpt = tmp_path / "model.npz"
    code, _, _ = run(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "2", *TINY,
                              "--lr", "0.01", "--clip", "norm:1", "--embed", "3", "--seed", "0"])
    assert code == 0
    meta = mg.load(ckpt)
    assert (meta["step"], meta["embed"], meta["seed"]) == (2, 3, 0)


@pytest.mark.parametrize("option, value", [
    ("--temperature", "nan"), ("--temperature", "0"), ("--temperature", "-1"), ("--temperature", "inf"),
    ("--seed", "-1"),
])
def test_bad_sample_options_are_one_line(trained_ckpt, capsys, option, value):
    refused(capsys, ["sample", "--checkpoint", str(trained_ckpt), option, value], option, repr(value))


@pytest.mark.parametrize("temperature", ["0.5", "1e-320"])  # 1e-320 overflowed to NaN probabilities
def test_sampling_at_a_small_temperature_works(trained_ckpt, capsys, temperature):
    code, out, _ = run(capsys, ["sample", "--checkpoint", str(trained_ckpt), "--length", "12", "--prime", "Be",
                                "--temperature", temperature])
    text = out[:-1]  # print's newline; the sample may end in one of its own
    assert code == 0 and text.startswith("Be") and len(text) == 14


@pytest.mark.parametrize("steps", ["3", "2"])
def test_resume_with_steps_not_beyond_the_checkpoint_is_refused_and_kept(zen, trained_ckpt, capsys, steps):
    before = trained_ckpt.read_bytes()
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(trained_ckpt), "--resume", "--steps", steps,
                     *TINY], "already at step 3", f"--steps {steps} must be larger")
    assert trained_ckpt.read_bytes() == before


def test_resume_with_more_steps_continues(zen, trained_ckpt, capsys):
    code, _, _ = run(capsys, ["train", "--text", str(zen), "--checkpoint", str(trained_ckpt), "--resume",
                              "--steps", "4", *TINY])
    assert code == 0 and mg.load(trained_ckpt)["step"] == 4


@pytest.mark.parametrize("kind, words", [("missing", ["not found"]), ("folder", ["is a folder"])])
def test_sample_from_a_missing_or_folder_checkpoint(tmp_path, capsys, kind, words):
    path = tmp_path / "model.npz"
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(capsys, ["sample", "--checkpoint", str(path)], str(path), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("source, words", [
    ("def broken(:\n", ["SyntaxError", "bad_cells.py"]),
    ("raise RuntimeError('first line\\nsecond line')\n", ["RuntimeError", "first line second line"]),
    ("import sys\nsys.exit(3)\n", ["SystemExit"]),
])
def test_a_cell_module_that_fails_on_import_is_one_line(tmp_path, monkeypatch, capsys, source, words):
    (tmp_path / "bad_cells.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "bad_cells", raising=False)
    refused(capsys, ["gradcheck", "--cell", "bad_cells:Leaky", "--examples", "1"], "bad_cells:Leaky", *words)


# --- 2. the window rule: seq_len + 1 characters are one window ---------------------------------
def test_a_text_of_seq_len_plus_one_characters_trains(tmp_path, capsys):
    text = tmp_path / "hello.txt"
    text.write_text("hello")
    ckpt = tmp_path / "hello.npz"
    code, out, _ = run(capsys, ["train", "--text", str(text), "--seq-len", "4", "--checkpoint", str(ckpt),
                                "--steps", "3", "--hidden", "3", "--backend", "graph", "--quiet"])
    assert code == 0 and "done: step 3" in out
    meta = mg.load(ckpt)
    assert meta["step"] == 3 and meta["vocab"] == ["e", "h", "l", "o"] and np.isfinite(meta["losses"]).all()


def test_a_text_of_seq_len_characters_says_what_it_needs(tmp_path, capsys):
    text = tmp_path / "hell.txt"
    text.write_text("hell")
    refused(capsys, ["train", "--text", str(text), "--seq-len", "4", "--steps", "1", "--quiet"],
            "has 4 characters", "--seq-len 4 needs 5 (--seq-len + 1)", str(text))


@pytest.mark.parametrize("seq_len, batch", [(1, 1), (4, 16), (25, 16)])
def test_streams_and_windows_agree_with_the_rule(seq_len, batch):
    model = charlm.CharModel(5, "elman", 3)
    for n in range(seq_len + 1, 4 * (seq_len + 1)):
        ids = np.arange(n) % 5
        trainer = charlm.Trainer(model, optim.SGD(model.parameters(), lr=0.1), ids, seq_len, batch)
        assert trainer.windows >= 1 and trainer.data.shape[1] >= seq_len + 1, n
    ids = np.arange(seq_len + 1) % 5
    trainer = charlm.Trainer(model, optim.SGD(model.parameters(), lr=0.1), ids, seq_len, batch)
    inputs, targets = trainer.window(0)
    assert trainer.windows == 1
    assert inputs[:, 0].tolist() == ids[:-1].tolist() and targets[:, 0].tolist() == ids[1:].tolist()


def test_the_trainer_refuses_seq_len_characters_with_the_right_numbers():
    model = charlm.CharModel(4, "elman", 3)
    with pytest.raises(UsageError, match=r"has 4 characters; --seq-len 4 needs 5 \(--seq-len \+ 1\)"):
        charlm.Trainer(model, optim.SGD(model.parameters(), lr=0.1), np.arange(4), 4, 16)


# --- 3. checkpoint loading ---------------------------------------------------------------
def rewrite(src, dst, replace=None, add=None):
    """Copy the zip `src` to `dst`, member bytes swapped per `replace` and extra members from `add`."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
        for name, data in add.items():
            zout.writestr(name, data)


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def header_only(shape, payload=64):
    """The .npy header of a float64 array of `shape`, followed by only `payload` bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * payload


@pytest.fixture
def mlp_ckpt(tmp_path):
    path = tmp_path / "run.ckpt"
    mg.save(path, MLP(), meta={"epoch": 1})
    return path


@pytest.mark.parametrize("replace, add, words", [
    ({}, {"notes.txt": b"a note"}, ["'notes.txt' is not a .npy array"]),
    ({"model/fc1.bias.npy": b"plain bytes, no npy magic"}, {}, ["'model/fc1.bias' is not a .npy array"]),
])
def test_a_member_that_is_not_npy_is_a_checkpoint_error(mlp_ckpt, tmp_path, replace, add, words):
    bad = tmp_path / "bad.ckpt"
    rewrite(mlp_ckpt, bad, replace, add)
    model = MLP(seed=5)
    before = model.state_dict()
    with pytest.raises(mg.CheckpointError) as info:
        mg.load(bad, model)
    assert str(bad) in str(info.value) and all(w in str(info.value) for w in words)
    assert all(np.array_equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("meta", [[1, 2], "a string", 7])
def test_a_meta_that_is_not_a_mapping_is_a_checkpoint_error(mlp_ckpt, tmp_path, meta):
    with zipfile.ZipFile(mlp_ckpt) as z:
        header = json.loads(np.lib.format.read_array(z.open(checkpoint.HEADER_KEY + ".npy")).tobytes())
    header["meta"] = meta
    bad = tmp_path / "bad.ckpt"
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    rewrite(mlp_ckpt, bad, {checkpoint.HEADER_KEY + ".npy": npy_bytes(raw)})
    with pytest.raises(mg.CheckpointError, match=f"{bad}: bad header: 'meta' must be an object, got "
                                                 f"{type(meta).__name__}"):
        mg.load(bad)


@pytest.mark.parametrize("shape", [(2**40,), (2**27,)])  # 8 TiB, and 1 GiB that could really be allocated
def test_a_member_declaring_more_than_it_holds_is_refused_without_allocating(mlp_ckpt, tmp_path, shape):
    bad = tmp_path / "bad.ckpt"
    rewrite(mlp_ckpt, bad, {"model/fc1.weight.npy": header_only(shape)})
    tracemalloc.start()
    try:
        with pytest.raises(mg.CheckpointError) as info:
            mg.load(bad, MLP())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(bad) in message and "'model/fc1.weight' declares shape" in message and "holds only 64 bytes" in message
    assert peak < 32 * 2**20


def test_an_empty_array_entry_still_round_trips(tmp_path):
    class Holder(nn.Module):
        def __init__(self):
            self.empty = nn.Parameter(np.zeros((0, 3)))
            self.w = nn.Parameter(np.arange(3.0))

    mg.save(tmp_path / "h.ckpt", Holder())
    fresh = Holder()
    fresh.w.data[:] = 0
    mg.load(tmp_path / "h.ckpt", fresh)
    assert fresh.empty.shape == (0, 3) and fresh.w.data.tolist() == [0.0, 1.0, 2.0]


def _plant_temporaries(folder, name):
    """Files a killed save of `name` might leave, and files that only look like them; returns both groups."""
    old = time.time() - 3600
    stale = folder / f".{name}.0123456789ab.tmp"
    keep = {
        "fresh": folder / f".{name}.ba9876543210.tmp",           # a save in progress
        "other name": folder / f".other-{name}.0123456789ab.tmp",
        "not our hex": folder / f".{name}.xyz.tmp",
        "user's backup": folder / f"{name}.bak",
    }
    for path in [stale, *keep.values()]:
        path.write_bytes(b"partial")
    folder_in_the_way = folder / f".{name}.aaaaaaaaaaaa.tmp"
    folder_in_the_way.mkdir()
    for path in [stale, folder_in_the_way, *(p for k, p in keep.items() if k != "fresh")]:
        os.utime(path, (old, old))
    return stale, [*keep.values(), folder_in_the_way]


@pytest.mark.parametrize("operation", ["save", "load"])
def test_stale_temporaries_of_this_checkpoint_are_cleaned_and_nothing_else(tmp_path, operation):
    ckpt = tmp_path / "run.ckpt"
    mg.save(ckpt, MLP(), meta={"n": 1})
    stale, kept = _plant_temporaries(tmp_path, ckpt.name)
    before = {p: p.read_bytes() for p in kept if p.is_file()}
    if operation == "save":
        mg.save(ckpt, MLP(seed=1), meta={"n": 2})
    else:
        assert mg.load(ckpt) == {"n": 1}
    assert not stale.exists()
    assert all(p.exists() for p in kept)
    assert {p: p.read_bytes() for p in before} == before


# --- 3. SIGTERM saves like Ctrl-C -----------------------------------------------------------
def test_sigterm_during_training_saves_and_restores_the_handler(zen, tmp_path, monkeypatch, capsys):
    real_step = charlm.Trainer.train_step

    def terminated(self):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self)

    def outside(signum, frame):  # without train's own handler SIGTERM would end the test run itself
        raise AssertionError("SIGTERM reached the handler train should have replaced")

    monkeypatch.setattr(charlm.Trainer, "train_step", terminated)
    previous = signal.signal(signal.SIGTERM, outside)
    try:
        ckpt = tmp_path / "model.npz"
        code, _, err = run(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "50", *TINY])
        assert signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 128 + signal.SIGTERM
    assert "terminated (SIGTERM) at step 2; checkpoint saved" in err
    assert mg.load(ckpt)["step"] == 2


@pytest.mark.slow
def test_sigterm_to_a_training_process_saves_a_checkpoint(zen, tmp_path):
    ckpt = tmp_path / "model.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigrad_cli", "train", "--text", str(zen), "--checkpoint", str(ckpt),
         "--steps", "1000000", "--save-every", "1000000", *TINY[:-1], "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not proc.stdout.readline().startswith("--- step") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
        assert not ckpt.exists()  # nothing saved yet: what follows is the SIGTERM's doing
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    step = mg.load(ckpt)["step"]
    assert step >= 2 and f"terminated (SIGTERM) at step {step}; checkpoint saved to {ckpt}" in err


# --- 4. API --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axis, expected", [
    ((0,), None, np.nan), ((0, 3), 0, [np.nan] * 3), ((0, 3), 1, []), ((2, 3), None, 2.5),
])
def test_mean_of_nothing_is_nan_without_a_warning(shape, axis, expected):
    x = mg.tensor(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = mg.mean(x, axis=axis)
        m.sum().backward()
    np.testing.assert_array_equal(m.data, expected)
    assert x.grad.shape == shape


@pytest.mark.parametrize("make", [mg.zeros, mg.ones, mg.randn])
def test_shapes_as_a_tuple_a_list_or_arguments(make):
    assert make((2, 3)).shape == make([2, 3]).shape == make(2, 3).shape == (2, 3)
    assert make(4).shape == (4,) and make(()).shape == ()


@pytest.mark.parametrize("make", [mg.zeros, mg.ones, mg.randn])
@pytest.mark.parametrize("shape, error, words", [
    ((2, -1), ValueError, "must not be negative"),
    ((2.5, 3), TypeError, "must be integers"),
    (("2", 3), TypeError, "must be integers"),
])
def test_a_bad_shape_names_the_function_and_the_shape(make, shape, error, words):
    with pytest.raises(error) as info:
        make(shape)
    message = str(info.value)
    assert message.startswith(make.__name__ + ":") and words in message and repr(shape) in message


# --- 5. output folders only get our files ---------------------------------------------------
def test_viz_replaces_only_its_own_files_and_says_which(tmp_path, capsys):
    mine = tmp_path / "my-notes.txt"
    mine.write_text("do not touch")
    earlier = tmp_path / "gru-rolled-block.svg"
    earlier.write_text("an earlier picture")
    code, out, _ = run(capsys, ["viz", "--cell", "gru", "--out", str(tmp_path)])
    assert code == 0
    assert mine.read_text() == "do not touch"
    assert earlier.read_text() != "an earlier picture"
    assert out.splitlines()[-1] == f"replaced 1 earlier file in {tmp_path}: gru-rolled-block.svg"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["my-notes.txt"] + [f"gru-{k}-block.{ext}" for k in ("rolled", "unrolled") for ext in ("svg", "gv")])


def test_viz_into_a_fresh_folder_replaces_nothing(tmp_path, capsys):
    code, out, _ = run(capsys, ["viz", "--cell", "elman", "--out", str(tmp_path / "new")])
    assert code == 0 and "replaced" not in out and len(out.split()) == 2


def test_viz_refuses_a_folder_in_the_way(tmp_path, capsys):
    (tmp_path / "lstm-unrolled-block.gv").mkdir()
    (tmp_path / "lstm-unrolled-block.gv" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(capsys, ["viz", "--out", str(tmp_path)], "lstm-unrolled-block.gv", "in the way")
    assert snapshot(tmp_path) == before


def test_demo_runs_twice_into_one_folder_and_touches_nothing_else(tmp_path, capsys):
    mine = tmp_path / "README-mine.md"
    mine.write_bytes(b"my own file\n")
    argv = ["demo", "--out", str(tmp_path), "--seconds", "0.4", "--backend", "graph", "--adding-steps", "3"]
    code, out, _ = run(capsys, argv)
    assert code == 0 and "replaced" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, *demo_outputs()])
    code, out, _ = run(capsys, argv)
    assert code == 0
    assert out.splitlines()[-1] == (f"replaced {len(demo_outputs())} earlier files in {tmp_path}: "
                                    + ", ".join(demo_outputs()))
    assert mine.read_bytes() == b"my own file\n"


# --- 6a. clipping by value ------------------------------------------------------------------
def test_value_clipping_runs_from_the_command(zen, tmp_path, monkeypatch, capsys):
    real, largest = mg.clip_grad_value_, []

    def spy(params, value):
        real(params, value)
        largest.append(max(float(np.abs(p.grad).max()) for p in params if p.grad is not None))

    monkeypatch.setattr(mg.clip, "clip_grad_value_", spy)  # where clip_and_check finds it
    ckpt = tmp_path / "model.npz"
    code, _, _ = run(capsys, ["train", "--text", str(zen), "--checkpoint", str(ckpt), "--steps", "3", *TINY,
                              "--clip", "value:0.01"])
    assert code == 0 and mg.load(ckpt)["step"] == 3
    assert len(largest) == 3 and max(largest) <= 0.01


def test_value_clipping_runs_for_a_task(capsys):
    code, out, _ = run(capsys, ["train", "--task", "adding", "--T", "5", "--cell", "elman", "--hidden", "3",
                                "--steps", "2", "--batch", "4", "--backend", "graph", "--quiet", "--clip", "value:1"])
    assert code == 0 and "held-out loss" in out


@pytest.mark.parametrize("clip", [("value", 1.0), ("norm", 1.0), None])
def test_a_non_finite_gradient_skips_the_update_untouched(clip):
    p = nn.Parameter(np.zeros(2))
    p.grad = np.array([np.inf, 3.0])
    assert charlm.clip_and_check([p], clip) is False
    assert p.grad.tolist() == [np.inf, 3.0]


@pytest.mark.parametrize("clip, expected", [(("value", 1.0), [1.0, -0.5]), (("norm", 1.0), [0.8, -0.6]),
                                            (None, [4.0, -3.0])])
def test_a_finite_gradient_is_clipped_as_asked(clip, expected):
    p = nn.Parameter(np.zeros(2))
    p.grad = np.array([4.0, -3.0]) if clip != ("value", 1.0) else np.array([3.0, -0.5])
    assert charlm.clip_and_check([p], clip) is True
    np.testing.assert_allclose(p.grad, expected, rtol=1e-6)


def test_grad_norm_measures_without_clipping():
    a, b = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0]), np.array([4.0])
    assert mg.grad_norm([a, b]) == 5.0 and (a.grad[0], b.grad[0]) == (3.0, 4.0)
    assert mg.clip_grad_norm_([a, b], 1.0) == 5.0 and np.isclose(a.grad[0], 0.6)


# --- 6b. the checkpoint path is checked before training, and a failed save rescues the run ------
def test_a_folder_as_checkpoint_is_refused_before_training(zen, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "old.npz").write_bytes(b"an older run")
    monkeypatch.setattr(charlm.Trainer, "train_step", lambda self: pytest.fail("trained before checking"))
    before = snapshot(tmp_path)
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(folder), "--force", "--steps", "5", *TINY],
            f"--checkpoint {folder} is a folder")
    assert snapshot(tmp_path) == before


def test_an_unwritable_checkpoint_folder_is_refused_before_training(zen, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    monkeypatch.setattr(charlm.Trainer, "train_step", lambda self: pytest.fail("trained before checking"))
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(blocker / "model.npz"), "--steps", "5",
                     *TINY], "cannot write to checkpoint folder", str(blocker))
    assert blocker.read_text() == "mine"


def _fail_first_save_to(monkeypatch, *targets):
    """mg.save raises ENOSPC the first time it is called with each of `targets`."""
    real, failed = mg.save, set()

    def flaky(path, *args, **kwargs):
        if Path(path) in targets and Path(path) not in failed:
            failed.add(Path(path))
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mg, "save", flaky)


def test_a_failed_save_is_rescued_beside_the_checkpoint(zen, trained_ckpt, tmp_path, monkeypatch, capsys):
    before = trained_ckpt.read_bytes()
    _fail_first_save_to(monkeypatch, trained_ckpt)
    rescue = tmp_path / f"model.npz.rescue-{os.getpid()}.npz"
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(trained_ckpt), "--resume", "--steps", "9",
                     "--save-every", "4", *TINY],
            f"cannot save checkpoint {trained_ckpt}", "No space left on device", f"(step 4) was saved to {rescue}")
    assert trained_ckpt.read_bytes() == before
    assert mg.load(rescue)["step"] == 4


def test_a_rescue_that_fails_beside_goes_to_the_current_folder(zen, trained_ckpt, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    beside = tmp_path / f"model.npz.rescue-{os.getpid()}.npz"
    _fail_first_save_to(monkeypatch, trained_ckpt, beside)
    rescue = here / beside.name
    refused(capsys, ["train", "--text", str(zen), "--checkpoint", str(trained_ckpt), "--resume", "--steps", "9",
                     "--save-every", "4", *TINY], f"was saved to {rescue}")
    assert mg.load(rescue)["step"] == 4 and not beside.exists()
