"""Text for the character-level model: the embedded corpus, reading a user's file, the vocabulary."""
from __future__ import annotations

import codecs
import contextlib
import io
from pathlib import Path

import numpy as np

from .errors import UsageError


def zen_of_python():
    """The Zen of Python, from the standard library's `this` module (about 850 characters)."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


def chars_needed(seq_len):
    """Characters one training window takes: seq_len inputs and, shifted by one, their seq_len targets."""
    return seq_len + 1


def read_text(path, seq_len):
    """The UTF-8 text of `path`, or a UsageError saying what is wrong with it (too short for `seq_len` included)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"text file not found: {path}")
    raw = p.read_bytes()
    if not raw.strip():
        raise UsageError(f"text file is empty: {path}")
    if b"\x00" in raw:
        raise UsageError(f"text file looks binary (it contains NUL bytes): {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"text file is not valid UTF-8 (byte {e.start}): {path}") from None
    if len(text) < chars_needed(seq_len):
        raise UsageError(f"text file has {len(text)} characters; --seq-len {seq_len} needs "
                         f"{chars_needed(seq_len)} (--seq-len + 1): {path}")
    return text


class Vocab:
    """Characters <-> integer ids, in sorted order so the same text always gives the same ids."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def of(cls, text):
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise UsageError(f"characters not in the model's vocabulary: {''.join(unknown)!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)
