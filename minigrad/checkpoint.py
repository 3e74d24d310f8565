"""Checkpoints: a module's parameters, an optimizer's state and JSON metadata in one .npz.

    mg.save("run.ckpt", model, opt, meta={"epoch": 3})
    meta = mg.load("run.ckpt", model, opt)

Layout of the file (an ordinary uncompressed .npz, readable with np.load):

    "__minigrad_checkpoint__"  uint8 bytes of a UTF-8 JSON header:
                               {"format": "minigrad-checkpoint", "version": 1, "meta": {...},
                                "model": {"type": ..., "keys": [...]},
                                "optimizer": {"type": ..., "keys": [...]} or null}
    "model/<parameter name>"   one array per entry of module.state_dict()
    "optim/<key>"              one array per entry of optimizer.state_dict()

Nothing is ever pickled: arrays are written and read with allow_pickle=False,
and a file carrying an object array is refused before anything is unpickled.
Saving writes a temporary file next to the target, fsyncs it and renames it
over the target, so a crash mid-save leaves the previous checkpoint whole;
the temporaries a killed save leaves behind (".<name>.<12 hex>.tmp") are
removed by the next save or load of the same name once nobody has written
them for STALE_AFTER seconds.  Loading reads each array's .npy header first
and refuses, before allocating anything, an entry that is not a numeric .npy
array or that declares more data than it holds; it checks every name, shape
and dtype of both the module and the optimizer before it changes either.
"""
from __future__ import annotations

import json
import math
import os
import stat
import time
import zipfile

import numpy as np

from .files import temporary_pattern, write_atomic

HEADER_KEY = "__minigrad_checkpoint__"
FORMAT = "minigrad-checkpoint"
VERSION = 1
_MODEL, _OPTIM = "model/", "optim/"
# A save rewrites its temporary continuously until the rename, so one untouched this long is an orphan.
STALE_AFTER = 60.0


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint, or one that does not fit the module/optimizer given."""


# --- saving -------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, np.generic):   # np.float32(0.5), np.int64(3): plain numbers once unwrapped
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-serialisable")


def _check_keys(obj, where="meta"):
    # json.dumps would turn {1: ...} into {"1": ...}: the metadata would not come back as saved.
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has the non-string key {k!r}; JSON keys are strings")
            _check_keys(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_keys(v, f"{where}[{i}]")


def _arrays_of(state, prefix, owner):
    out = {}
    for k, v in state.items():
        arr = np.asarray(v)
        if arr.dtype.kind not in "biuf":
            raise CheckpointError(f"save: {owner} state entry {k!r} has dtype {arr.dtype}; "
                                  "only numeric arrays can be saved (nothing is pickled)")
        out[prefix + k] = arr
    return out


def _remove_stale_temporaries(path):
    """Delete the temporaries interrupted saves of `path` left: our naming for this very name, regular files only.

    Best effort: a file we cannot inspect or remove is left where it is.
    """
    directory = os.path.dirname(os.path.abspath(path))
    ours = temporary_pattern(path)
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not ours.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_AFTER:
                os.unlink(entry.path)
        except OSError:
            pass


def save(path, module, optimizer=None, meta=None):
    """Write `module`'s parameters, `optimizer`'s state and JSON-serialisable `meta` (a dict) to `path`.

    The file is written under exactly `path` (no ".npz" is appended).  The
    write is atomic: a temporary file in the same directory, flushed and
    fsynced, then renamed over `path`.
    """
    path = os.fspath(path)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise TypeError(f"save: meta must be a dict, got {type(meta).__name__}")
    try:
        _check_keys(meta)
        meta_json = json.loads(json.dumps(meta, default=_json_default))
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: meta must be JSON-serialisable: {e}") from None

    model_state = module.state_dict()
    arrays = _arrays_of(model_state, _MODEL, type(module).__name__)
    header = {"format": FORMAT, "version": VERSION, "meta": meta_json,
              "model": {"type": type(module).__name__, "keys": list(model_state)}, "optimizer": None}
    if optimizer is not None:
        optim_state = optimizer.state_dict()
        arrays.update(_arrays_of(optim_state, _OPTIM, type(optimizer).__name__))
        header["optimizer"] = {"type": type(optimizer).__name__, "keys": list(optim_state)}
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    _remove_stale_temporaries(path)
    write_atomic(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


# --- loading ------------------------------------------------------------------------
# np.savez writes version 1.0 headers (2.0 for very long ones); 3.0 only adds UTF-8 field names, which we never save.
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(zf, info, key, refuse):
    """One entry's array, its .npy header checked first: nothing is allocated for what the file does not hold."""
    try:
        with zf.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
            except ValueError as e:
                raise refuse(f"entry {key!r} is not a .npy array ({e})") from None
            if version not in _HEADER_READERS:
                raise refuse(f"entry {key!r} has .npy format version {version[0]}.{version[1]}, "
                             "which no checkpoint uses")
            shape, _, dtype = _HEADER_READERS[version](member)
            if dtype.hasobject:
                raise refuse(f"entry {key!r} is a pickled (object) array; refusing to unpickle it "
                             "(a checkpoint holds numeric arrays only)")
            if dtype.kind not in "biuf":
                raise refuse(f"entry {key!r} has dtype {dtype}; a checkpoint holds numeric arrays only")
            declared, held = math.prod(shape) * dtype.itemsize, info.file_size - member.tell()
            if declared > held:
                raise refuse(f"entry {key!r} declares shape {shape} of {dtype} ({declared:,} bytes) but holds "
                             f"only {held:,} bytes; damaged or crafted, not read")
        with zf.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except CheckpointError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise refuse(f"entry {key!r} is unreadable or truncated ({type(e).__name__}: {e})") from None


def _read_arrays(npz, refuse):
    """{key: array} of every entry of the open .npz, or CheckpointError for the first one that is not ours."""
    infos = npz.zip.infolist()
    keys = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
    if HEADER_KEY not in keys:
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        raise refuse(f"not a minigrad checkpoint (an .npz without a {HEADER_KEY!r} entry; "
                     f"it holds: {shown or 'nothing'})")
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise refuse(f"damaged checkpoint: entry {twice[0]!r} appears more than once")
    arrays = {}
    for info, key in zip(infos, keys):
        if not info.filename.endswith(".npy"):
            raise refuse(f"entry {key!r} is not a .npy array (a checkpoint holds numeric arrays only)")
        arrays[key] = _read_member(npz.zip, info, key, refuse)
    return arrays


def _read(path):
    """(header, {key: array}) from `path`, or CheckpointError saying why it is not a checkpoint."""
    def refuse(why):
        return CheckpointError(f"{path}: {why}")

    # Our own file object, closed on every path: np.load leaks its handle when the zip is unreadable.
    with open(path, "rb") as f:
        try:
            npz = np.load(f, allow_pickle=False)
        except ValueError as e:
            # np.load takes anything that is neither .npy nor .npz for a pickle, which allow_pickle=False refuses.
            why = "neither .npz nor .npy, and never unpickled" if "pickle" in str(e) else f"not an .npz file: {e}"
            raise refuse(f"not a minigrad checkpoint ({why})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise refuse(f"not a minigrad checkpoint (unreadable or truncated: {type(e).__name__}: {e})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise refuse("not a minigrad checkpoint (a single .npy array, not an .npz)")
        with npz:
            arrays = _read_arrays(npz, refuse)

    raw = arrays.pop(HEADER_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise refuse(f"bad header: {HEADER_KEY!r} must be 1-d uint8, got {raw.dtype} of shape {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise refuse(f"bad header: not UTF-8 JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise refuse(f"not a minigrad checkpoint (header format is {got!r}, expected {FORMAT!r})")
    if header.get("version") != VERSION:
        raise refuse(f"checkpoint format version {header.get('version')!r}; this minigrad reads version {VERSION}")
    if not isinstance(header.get("meta", {}), dict):
        raise refuse(f"bad header: 'meta' must be an object, got {type(header['meta']).__name__}")

    # The header's key lists and the entries present must agree, or the file was damaged or tampered with.
    listed = set()
    for part, prefix in (("model", _MODEL), ("optimizer", _OPTIM)):
        if header.get(part) is not None and not isinstance(header[part], dict):
            raise refuse(f"bad header: {part!r} must be an object or null, got {type(header[part]).__name__}")
        if header.get(part) is not None:
            keys = header[part].get("keys", [])
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise refuse(f"bad header: {part!r} keys must be a list of names")
            listed |= {prefix + k for k in keys}
    if listed != set(arrays):
        missing, extra = sorted(listed - set(arrays)), sorted(set(arrays) - listed)
        raise refuse("damaged checkpoint: the header and the stored arrays disagree"
                     + (f"; listed but absent: {', '.join(missing)}" if missing else "")
                     + (f"; present but not listed: {', '.join(extra)}" if extra else ""))
    return header, arrays


def _section(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load(path, module=None, optimizer=None):
    """Read the checkpoint at `path`, load it into `module` / `optimizer` if given, and return its meta dict.

    Everything is checked before anything changes: if the module's parameter
    names, shapes or dtypes, or the optimizer's type and state, differ from
    the file, CheckpointError lists the differences and neither is touched.
    """
    path = os.fspath(path)
    _remove_stale_temporaries(path)
    header, arrays = _read(path)
    problems = []
    model_state = optim_state = None
    if module is not None:
        model_state = _section(arrays, _MODEL)
        problems += [f"model ({type(module).__name__}): {p}" for p in module.state_problems(model_state, "the file")]
    if optimizer is not None:
        saved = header.get("optimizer")
        if saved is None:
            problems.append("the file holds no optimizer state")
        elif saved.get("type") != type(optimizer).__name__:
            problems.append(f"the file holds {saved.get('type')} state, not {type(optimizer).__name__} state")
        else:
            optim_state = _section(arrays, _OPTIM)
            problems += [f"optimizer ({type(optimizer).__name__}): {p}"
                         for p in optimizer.check_state_dict(optim_state)]
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not fit: " + "; ".join(problems))
    if module is not None:
        module.load_state_dict(model_state)
    if optimizer is not None:
        optimizer.load_state_dict(optim_state)
    return header.get("meta", {})
