import json
import os
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import checkpoint, optim
from mlp_helpers import MLP, OPTIMIZERS, X, Y


def train(model, opt, steps):
    losses = []
    for _ in range(steps):
        loss = mg.mse_loss(model(mg.tensor(X.astype(model.fc1.weight.dtype))), mg.tensor(Y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def trained(tmp_path):
    """A checkpoint of an Adam-trained MLP, with the model and optimizer that wrote it."""
    model = MLP()
    opt = optim.Adam(model.parameters(), lr=0.02)
    train(model, opt, 3)
    path = tmp_path / "run.ckpt"
    mg.save(path, model, opt, meta={"epoch": 3})
    return path, model, opt


# --- round trips ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_is_bit_exact(tmp_path, name):
    model = MLP()
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, 3)
    meta = {"epoch": 3, "loss": 0.25, "tags": ["a", "b"], "nested": {"ok": True, "none": None}}
    mg.save(tmp_path / "c.npz", model, opt, meta=meta)
    fresh = MLP(seed=1)
    fresh_opt = OPTIMIZERS[name](fresh.parameters())
    assert mg.load(tmp_path / "c.npz", fresh, fresh_opt) == meta
    assert_same_state(fresh.state_dict(), model.state_dict())
    assert_same_state(fresh_opt.state_dict(), opt.state_dict())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resumed_run_continues_exactly_like_an_uninterrupted_one(tmp_path, name):
    model = MLP()
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, 5)
    mg.save(tmp_path / "mid.ckpt", model, opt)
    uninterrupted = train(model, opt, 5)

    resumed_model = MLP(seed=7)
    resumed_opt = OPTIMIZERS[name](resumed_model.parameters())
    mg.load(tmp_path / "mid.ckpt", resumed_model, resumed_opt)
    assert train(resumed_model, resumed_opt, 5) == uninterrupted
    assert_same_state(resumed_model.state_dict(), model.state_dict())


def test_float32_model_round_trips_as_float32(tmp_path):
    model = MLP(dtype=np.float32)
    opt = optim.Adam(model.parameters())
    train(model, opt, 2)
    mg.save(tmp_path / "f32", model, opt)
    fresh = MLP(seed=3, dtype=np.float32)
    fresh_opt = optim.Adam(fresh.parameters())
    mg.load(tmp_path / "f32", fresh, fresh_opt)
    assert fresh.fc1.weight.dtype == np.float32
    assert_same_state(fresh_opt.state_dict(), opt.state_dict())


def test_file_is_a_plain_npz_with_prefixed_keys_and_a_json_header(trained):
    path, model, opt = trained
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        header = json.loads(z[checkpoint.HEADER_KEY].tobytes().decode())
    assert keys == ({checkpoint.HEADER_KEY} | {"model/" + k for k in model.state_dict()}
                    | {"optim/" + k for k in opt.state_dict()})
    assert (header["format"], header["version"]) == ("minigrad-checkpoint", 1)
    assert header["optimizer"]["type"] == "Adam" and header["meta"] == {"epoch": 3}


def test_load_without_targets_returns_meta_only(trained):
    path, model, _ = trained
    before = model.state_dict()
    assert mg.load(path) == {"epoch": 3}
    assert_same_state(model.state_dict(), before)


def test_save_without_optimizer_then_load_model_only(tmp_path):
    model = MLP()
    mg.save(tmp_path / "m", model)
    fresh = MLP(seed=2)
    assert mg.load(tmp_path / "m", fresh) == {}
    assert_same_state(fresh.state_dict(), model.state_dict())
    with pytest.raises(mg.CheckpointError, match="no optimizer state"):
        mg.load(tmp_path / "m", fresh, optim.SGD(fresh.parameters(), lr=0.1))


# --- meta ----------------------------------------------------------------------------
def test_meta_accepts_numpy_scalars(tmp_path):
    mg.save(tmp_path / "m", MLP(), meta={"loss": np.float32(0.5), "step": np.int64(7)})
    assert mg.load(tmp_path / "m") == {"loss": 0.5, "step": 7}


@pytest.mark.parametrize("meta, message", [
    ({"obj": object()}, "JSON-serialisable.*object"),
    ({"arr": np.zeros(3)}, "JSON-serialisable.*ndarray"),
    ({1: "int key"}, "non-string key 1"),
    ({"deep": [{2: 0}]}, r"meta\['deep'\]\[0\] has the non-string key 2"),
    (["not", "a", "dict"], "meta must be a dict"),
])
def test_meta_must_be_json(tmp_path, meta, message):
    with pytest.raises(TypeError, match=message):
        mg.save(tmp_path / "m", MLP(), meta=meta)
    assert os.listdir(tmp_path) == []


# --- atomic writes -------------------------------------------------------------------
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_mid_save_leaves_the_old_checkpoint_and_no_temp_file(trained, monkeypatch, exc):
    path, model, opt = trained
    old_bytes = path.read_bytes()
    real_savez = np.savez

    def savez_then_crash(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)
        file.seek(len(old_bytes) // 2)
        file.truncate()    # half a file on disk, as if the process died while writing
        raise exc

    monkeypatch.setattr(np, "savez", savez_then_crash)
    train(model, opt, 1)
    with pytest.raises(type(exc)):
        mg.save(path, model, opt, meta={"epoch": 4})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(path.parent) == [path.name]
    assert mg.load(path) == {"epoch": 3}


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    mg.save(tmp_path / "c", MLP())
    assert events[:2] == ["fsync", "replace"]


def test_save_overwrites_an_existing_checkpoint(trained):
    path, model, opt = trained
    train(model, opt, 1)
    mg.save(path, model, opt, meta={"epoch": 4})
    fresh = MLP(seed=9)
    assert mg.load(path, fresh) == {"epoch": 4}
    assert_same_state(fresh.state_dict(), model.state_dict())
    assert os.listdir(path.parent) == [path.name]


# --- refusals: checkpoints that do not fit -------------------------------------------
def snapshot(model, opt):
    return model.state_dict(), opt.state_dict()


def assert_unchanged(model, opt, snap):
    assert_same_state(model.state_dict(), snap[0])
    assert_same_state(opt.state_dict(), snap[1])


@pytest.mark.parametrize("target, expected", [
    (lambda: MLP(hidden=5), [r"fc1.weight: shape \(4, 2\) in the file, \(5, 2\) in the module",
                             r"fc2.weight: shape \(1, 4\) in the file, \(1, 5\)"]),
    (lambda: MLP(extra=True), ["missing: scale"]),
    (lambda: MLP(dtype=np.float32), ["fc1.weight: dtype float64 in the file, float32 in the module"]),
])
def test_a_model_that_does_not_fit_is_refused_and_left_alone(trained, target, expected):
    path, _, _ = trained
    model = target()
    opt = optim.Adam(model.parameters(), lr=0.02)
    snap = snapshot(model, opt)
    with pytest.raises(mg.CheckpointError) as info:
        mg.load(path, model, opt)
    assert str(path) in str(info.value)
    for text in expected:
        assert re.search(text, str(info.value)), (text, str(info.value))
    assert_unchanged(model, opt, snap)


def test_unexpected_model_key_is_listed(tmp_path):
    mg.save(tmp_path / "big", MLP(extra=True))
    model = MLP()
    before = model.state_dict()
    with pytest.raises(mg.CheckpointError, match="unexpected: scale"):
        mg.load(tmp_path / "big", model)
    assert_same_state(model.state_dict(), before)


def test_model_fits_but_optimizer_does_not_so_neither_changes(trained):
    path, _, _ = trained
    model = MLP(seed=4)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    snap = snapshot(model, opt)
    with pytest.raises(mg.CheckpointError, match="the file holds Adam state, not SGD state"):
        mg.load(path, model, opt)
    assert_unchanged(model, opt, snap)


def test_optimizer_over_different_parameters_is_refused(trained):
    path, _, _ = trained
    model = MLP(seed=4)
    opt = optim.Adam([model.fc1.weight], lr=0.02)   # state for 1 parameter, the file has 4
    snap = snapshot(model, opt)
    with pytest.raises(mg.CheckpointError, match=r"optimizer \(Adam\): .*unexpected: 1.exp_avg"):
        mg.load(path, model, opt)
    assert_unchanged(model, opt, snap)


# --- refusals: files that are not checkpoints ----------------------------------------
unpickled = []


def _mark_unpickled():
    unpickled.append(True)
    return "payload"


class Payload:
    def __reduce__(self):
        return (_mark_unpickled, ())


def copy_entries(src, dst, **replace):
    with np.load(src, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    entries.update(replace)
    np.savez(dst, allow_pickle=True, **{k: v for k, v in entries.items() if v is not None})


def test_a_pickled_array_is_refused_without_being_unpickled(trained, tmp_path):
    path, model, opt = trained
    evil = tmp_path / "evil.npz"
    evil_array = np.empty(1, dtype=object)
    evil_array[0] = Payload()
    copy_entries(path, evil, **{"model/fc1.bias": evil_array})
    snap = snapshot(model, opt)
    unpickled.clear()
    with pytest.raises(mg.CheckpointError, match=r"evil.npz.*'model/fc1.bias' is a pickled \(object\) array"):
        mg.load(evil, model, opt)
    assert unpickled == []
    assert_unchanged(model, opt, snap)
    # The crafted file really does carry a pickle that runs code when unpickled.
    with np.load(evil, allow_pickle=True) as z:
        z["model/fc1.bias"]
    assert unpickled == [True]


def test_a_truncated_file_is_refused(trained):
    path, model, _ = trained
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        path.write_bytes(data[:cut])
        with pytest.raises(mg.CheckpointError, match=str(path)):
            mg.load(path, model)


def test_a_flipped_byte_is_caught_by_the_zip_checksum(trained):
    path, model, _ = trained
    data = bytearray(path.read_bytes())
    at = bytes(data).find(model.fc1.weight.data.tobytes())
    assert at > 0
    data[at + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    before = model.state_dict()
    with pytest.raises(mg.CheckpointError, match="'model/fc1.weight' is unreadable"):
        mg.load(path, model)
    assert_same_state(model.state_dict(), before)


def test_a_random_binary_file_is_refused(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(mg.CheckpointError, match=f"{path}: not a minigrad checkpoint"):
        mg.load(path, MLP())


def test_an_empty_file_is_refused(tmp_path):
    (tmp_path / "zero-bytes").write_bytes(b"")
    with pytest.raises(mg.CheckpointError, match="zero-bytes: not a minigrad checkpoint"):
        mg.load(tmp_path / "zero-bytes")


def test_a_plain_npz_is_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", weight=np.ones(3))
    with pytest.raises(mg.CheckpointError, match=r"plain.npz: not a minigrad checkpoint .*holds: weight"):
        mg.load(tmp_path / "plain.npz", MLP())


def test_a_npy_file_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(mg.CheckpointError, match="single .npy array"):
        mg.load(tmp_path / "a.npy")


def header_bytes(obj):
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


@pytest.mark.parametrize("header, message", [
    (np.frombuffer(b"\xff\xfe not json", dtype=np.uint8), "bad header: not UTF-8 JSON"),
    (np.zeros(3, dtype=np.float64), "must be 1-d uint8"),
    (header_bytes({"format": "something-else", "version": 1}), "header format is 'something-else'"),
    (header_bytes([1, 2]), "header format is 'list'"),
])
def test_a_bad_header_is_refused(trained, tmp_path, header, message):
    path, _, _ = trained
    copy_entries(path, tmp_path / "bad.npz", **{checkpoint.HEADER_KEY: header})
    with pytest.raises(mg.CheckpointError, match=message):
        mg.load(tmp_path / "bad.npz")


def test_a_newer_format_version_is_refused(trained, tmp_path):
    path, _, _ = trained
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z[checkpoint.HEADER_KEY].tobytes())
    header["version"] = checkpoint.VERSION + 1
    copy_entries(path, tmp_path / "new.npz", **{checkpoint.HEADER_KEY: header_bytes(header)})
    with pytest.raises(mg.CheckpointError, match=f"version {checkpoint.VERSION + 1}"):
        mg.load(tmp_path / "new.npz")


def test_an_array_missing_from_the_file_is_refused_even_without_targets(trained, tmp_path):
    path, _, _ = trained
    copy_entries(path, tmp_path / "holed.npz", **{"optim/0.exp_avg": None})
    with pytest.raises(mg.CheckpointError, match="listed but absent: optim/0.exp_avg"):
        mg.load(tmp_path / "holed.npz")


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        mg.load(tmp_path / "nope.ckpt")
