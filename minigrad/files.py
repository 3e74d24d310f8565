"""Writing a file so that no reader ever sees part of it.

`write_atomic(path, write)` lets `write(f)` fill a temporary file in the same
folder (``.<name>.<12 hex>.tmp``, created exclusively, so never someone else's
file), fsyncs it, renames it over `path` and fsyncs the folder: after a crash
`path` holds the old contents or the new, whole.  Checkpoints and generated
kernels are written this way.
"""
from __future__ import annotations

import os
import re
import secrets


def temporary_pattern(path):
    """The names `write_atomic` gives the temporaries of `path` (to find those a killed writer left)."""
    return re.compile(rf"\.{re.escape(os.path.basename(path))}\.[0-9a-f]{{12}}\.tmp")


def write_atomic(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL: never clobber someone else's file; mode 0o666 lets the umask decide, as for open().
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)  # make the rename itself durable


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return   # e.g. Windows cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
