"""Argument parsing and dispatch for the `minigrad` command.

Every bad input the user can give becomes one line on stderr and exit code 2
(`UsageError`); nothing the user already had is overwritten on the way.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from .errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we promise one line
        raise UsageError(f"{self.prog}: {message}")


def _clip(spec):
    kind, _, value = spec.partition(":")
    try:
        v = float(value)
    except ValueError:
        v = -1.0
    # inf would clip nothing and nan everything; neither is what the user meant.
    if kind not in ("value", "norm") or not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--clip must be value:V or norm:V with V a finite number > 0, got {spec!r}")
    return kind, v


def _number(kind, what, ok):
    """A parser for finite `kind` numbers v with ok(v); `what` names them in the message."""
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            v = None
        # nan passes every `v <= 0` test, and inf makes a learning rate or a temperature meaningless.
        if v is None or not math.isfinite(v) or not ok(v):
            raise argparse.ArgumentTypeError(f"expected a {what}, got {s!r}")
        return v
    return parse


def _positive(kind):
    return _number(kind, f"positive {'finite ' * (kind is float)}{kind.__name__}", lambda v: v > 0)


def _non_negative(kind):
    return _number(kind, f"non-negative {kind.__name__}", lambda v: v >= 0)


def build_parser():
    p = Parser(prog="minigrad", description="Train, draw and check recurrent nets on the minigrad engine.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    backends = ("auto", "numba", "graph")

    d = sub.add_parser("demo", help="train a character LSTM and an Elman RNN; write pictures and index.html")
    d.add_argument("--out", default="minigrad-out", help="output folder (default ./minigrad-out)")
    d.add_argument("--seconds", type=_positive(float), default=30.0, help="training time for both models together")
    d.add_argument("--backend", choices=backends, default="auto")
    d.add_argument("--adding-steps", type=_positive(int), default=1200,
                   help="training steps of each net on the adding problem (default 1200)")

    f = sub.add_parser("figures", help="the figures of Deep Learning ch. 10, drawn from running models, with "
                                       "index.html")
    f.add_argument("--out", default="minigrad-out/figures", help="output folder (default ./minigrad-out/figures)")

    t = sub.add_parser("train", help="train a character-level language model, or a synthetic long-memory task")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="UTF-8 text file to model character by character")
    src.add_argument("--task", choices=("adding", "copy"), help="a synthetic long-dependency task")
    t.add_argument("--T", type=_positive(int), default=100, help="sequence length for --task (default 100)")
    t.add_argument("--cell", choices=("elman", "lstm", "gru"), default="lstm")
    t.add_argument("--hidden", type=_positive(int), default=64)
    t.add_argument("--embed", type=_non_negative(int), default=0, help="embedding size; 0 = one-hot characters")
    t.add_argument("--seq-len", type=_positive(int), default=25, help="truncated-BPTT window K")
    t.add_argument("--batch", type=_positive(int), default=16)
    t.add_argument("--steps", type=_positive(int), default=1000, help="total optimizer steps (a resumed run "
                   "continues up to this count)")
    t.add_argument("--lr", type=_positive(float), default=None, help="learning rate (default per optimizer)")
    t.add_argument("--optim", choices=("adagrad", "adam", "sgd"), default="adam")
    t.add_argument("--clip", type=_clip, default=("norm", 5.0), help="value:V or norm:V (default norm:5)")
    t.add_argument("--backend", choices=backends, default="auto")
    t.add_argument("--checkpoint", help="checkpoint file (.npz), saved atomically")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    t.add_argument("--force", action="store_true", help="start over even if --checkpoint exists")
    t.add_argument("--save-every", type=_positive(int), default=200)
    t.add_argument("--sample-every", type=_positive(int), default=200)
    t.add_argument("--seed", type=_non_negative(int), default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--length", type=_positive(int), default=200)
    s.add_argument("--temperature", type=_positive(float), default=1.0)
    s.add_argument("--prime", default="")
    s.add_argument("--seed", type=_non_negative(int), default=0)

    v = sub.add_parser("viz", help="draw a cell's rolled and unrolled graphs")
    v.add_argument("--cell", choices=("elman", "lstm", "gru"), default="lstm")
    v.add_argument("--steps", type=_positive(int), default=4)
    v.add_argument("--detail", choices=("block", "ops"), default="block")
    v.add_argument("--collapse", type=_positive(int), default=None)
    v.add_argument("--params", choices=("labels", "nodes"), default="labels",
                   help="weights as symbols on the edges (default) or as nodes")
    v.add_argument("--format", choices=("svg", "png", "pdf"), default="svg")
    v.add_argument("--out", default="minigrad-out")
    v.add_argument("--input", type=_positive(int), default=3)
    v.add_argument("--hidden", type=_positive(int), default=4)

    g = sub.add_parser("gradcheck", help="property-based gradient check of a built-in or your own cell")
    g.add_argument("--cell", default="lstm", help="elman, lstm, gru, or module:Class for your own Cell subclass")
    g.add_argument("--examples", type=_positive(int), default=20, help="hypothesis examples")
    g.add_argument("--backend", choices=backends, default="graph")
    g.add_argument("--seed", type=_non_negative(int), default=0)

    k = sub.add_parser("kernel", help="print the Numba kernels generated for a cell (nothing is compiled)")
    k.add_argument("--cell", default="lstm", help="elman, lstm, gru, or module:Class for your own Cell subclass")
    k.add_argument("--input", type=_positive(int), default=32)
    k.add_argument("--hidden", type=_positive(int), default=32)
    k.add_argument("--batch", type=_positive(int), default=1)
    k.add_argument("--dtype", choices=("float64", "float32"), default="float64")

    # `minigrad bench ...` hands its arguments to the benchmark's own parser (see main()).
    sub.add_parser("bench", help="print the benchmark table (numba vs graph vs PyTorch if installed)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # measures the library as users get it: BLAS threads left alone
        from .bench import main as bench
        return bench(argv[1:])
    # Training here uses small matrices, and Numba's kernels bring a second OpenBLAS (SciPy's): two
    # thread pools on two cores spin against each other. One thread each made a demo training step 3x
    # faster (4.6 ms against 13.5 ms, measured under load). Before NumPy is imported; the user's setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        args = build_parser().parse_args(argv)
        from . import commands
        return getattr(commands, args.command)(args) or 0
    except UsageError as e:
        print(f"minigrad: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        from viz import GraphvizNotFound  # imported only here: the other commands need not load viz
        if not isinstance(e, GraphvizNotFound):
            raise
        print(f"minigrad: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error):
    # A message may quote what the user gave us (a file name, an exception from their module) verbatim.
    return " ".join(str(error).split())


if __name__ == "__main__":  # python -m minigrad_cli.main, as python -m minigrad_cli
    sys.exit(main())
