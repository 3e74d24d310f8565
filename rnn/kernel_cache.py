"""Generated kernels as importable modules, so Numba's on-disk cache works across processes.

The source is written once to ``$MINIGRAD_CACHE/<hash>.py`` (default
``~/.cache/minigrad/kernels``), atomically, and imported with importlib; Numba
keeps its compiled code in ``__pycache__`` beside it.  A second process with the
same source finds both and does not compile.  In memory, modules are kept by hash.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import llvmlite.binding as llvm

# The fused element-wise loops read and write a dozen arrays LLVM cannot prove
# distinct; past 8 pointer checks its loop vectoriser gives up ("too many memory
# checks needed") and the loops run scalar.  Allow the checks: they run once per
# inner loop, and the vectorised loops are several times faster.  The option only
# makes the vectoriser more willing, for every function compiled in this process.
LLVM_OPTIONS = ("-runtime-memory-check-threshold=512", "-vectorize-memory-check-threshold=512")
for _opt in LLVM_OPTIONS:
    llvm.set_option("minigrad", _opt)

_MODULES: dict = {}


def cache_dir():
    env = os.environ.get("MINIGRAD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "minigrad" / "kernels"


def source_hash(source):
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def write_once(path, text):
    """Write `text` to `path` unless it exists; a rename makes the file appear whole or not at all."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # a racing writer wrote the same text: either copy is right
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(source):
    """The module compiled from `source`: in memory, else from the cache directory."""
    key = source_hash(source)
    mod = _MODULES.get(key)
    if mod is None:
        path = cache_dir() / f"rnn_kernel_{key}.py"
        write_once(path, source)
        name = f"minigrad_kernels.rnn_kernel_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # numba's cache locator finds functions through their module
        spec.loader.exec_module(mod)
        _MODULES[key] = mod
    return mod
