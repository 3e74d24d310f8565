"""Generated kernels as importable modules, so Numba's on-disk cache works across processes.

The source is written to ``$MINIGRAD_CACHE/rnn_kernel_<hash>.py`` (default
``~/.cache/minigrad/kernels``) and imported with importlib; Numba keeps its
compiled code in ``__pycache__`` beside it.  A second process with the same
source finds both and does not compile.  In memory, modules are kept by hash.

Nothing in the folder is trusted: before a file is imported its bytes must be
exactly the source we generated (whose hash names it, and which names the
generator's version), so a truncated, edited or foreign file is written again
rather than run.  Writes go to a temporary file that is fsynced and renamed
over the target.  Numba's own cache files are checked by Numba; when they do
not load, `reload_clean` removes them so the kernels compile afresh.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import llvmlite.binding as llvm

from minigrad.files import write_atomic

from .emit import LLVM_OPTIONS
from .ir import KernelError

# Allow the vectoriser its pointer checks (emit.LLVM_OPTIONS says why): they run once per inner
# loop, and the vectorised loops are several times faster.  The option only makes the
# vectoriser more willing, for every function compiled in this process.
for _opt in LLVM_OPTIONS:
    llvm.set_option("minigrad", _opt)

_MODULES: dict = {}


def cache_dir():
    env = os.environ.get("MINIGRAD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "minigrad" / "kernels"


def where():
    """The cache folder as the user set it, for messages."""
    env = os.environ.get("MINIGRAD_CACHE")
    return f"MINIGRAD_CACHE={env}" if env else f"the kernel cache {cache_dir()} (set MINIGRAD_CACHE to move it)"


def source_hash(source):
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def write_checked(path, text):
    """Make `path` hold exactly `text`: kept if it does, else written whole (see minigrad.files).
    True if it had to be written."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(data))  # a racing writer writes the same bytes: either copy is right
    return True


def load(source):
    """The module compiled from `source`: in memory, else from the cache folder; KernelError if it
    cannot be written or imported there."""
    key = source_hash(source)
    mod = _MODULES.get(key)
    if mod is None:
        path = cache_dir() / f"rnn_kernel_{key}.py"
        try:
            if write_checked(path, source):
                _remove_numba_files(path)  # compiled from other bytes, if any: never theirs
        except OSError as e:
            raise KernelError(f"numba backend: cannot write the generated kernel to {where()}: "
                              f"{e.strerror or e} ({e.filename or path})") from None
        mod = _MODULES[key] = _import(path, key)
    return mod


def _import(path, key):
    name = f"minigrad_kernels.rnn_kernel_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # numba's cache locator finds functions through their module
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        sys.modules.pop(name, None)
        raise KernelError(f"numba backend: cannot import the generated kernel {path} ({where()}): "
                          f"{type(e).__name__}: {e}") from None
    return mod


def _remove_numba_files(path):
    for f in (path.parent / "__pycache__").glob(f"{path.stem}.*"):
        try:
            f.unlink()
        except OSError:
            pass


def reload_clean(module):
    """The same kernels imported afresh, with Numba's cache files for them removed first (a damaged
    index or object file makes Numba raise rather than recompile)."""
    path = Path(module.__file__)
    key = path.stem[len("rnn_kernel_"):]
    _remove_numba_files(path)
    _MODULES.pop(key, None)
    mod = _MODULES[key] = _import(path, key)
    return mod


def loaded(stem):
    """The module loaded from the cache folder's `stem`.py (a generated training step imports the
    kernels it calls this way: they are loaded before it, by rnn.kernels.binding.prepare)."""
    mod = _MODULES.get(stem[len("rnn_kernel_"):])
    if mod is None:
        raise KernelError(f"numba backend: the kernels {stem} are not loaded")
    return mod
