"""Training throughput of `minigrad train` at the notes' min-char-rnn setting, beside a NumPy loop and PyTorch.

The setting: an Elman cell of 100 units reading one-hot characters (no embedding), windows of 25
characters, batch 1, Adagrad at lr 0.1, gradients clipped to a joint norm of 5 — that is

    minigrad train --text FILE --cell elman --hidden 100 --embed 0 --seq-len 25 --batch 1 \\
                   --optim adagrad --lr 0.1 --clip norm:5

timed through the command's own training step (`minigrad_cli.charlm.Trainer.train_step`: the step
compiled whole, rnn.kernels.training) on the first 35000 characters of README.md.  Beside it:

  engine the same Trainer with whole_step=False: rnn.run's kernels, the engine's ops and backward(),
         minigrad.clip and optimizer.step() — what a model the whole-step compiler does not cover runs;
  numpy  the same model trained by a 40-line loop with hand-written BPTT (min-char-rnn's, with the
         joint-norm clip and PyTorch's Adagrad), the reference a general engine is measured against;
  torch  a PyTorch eager loop: nn.RNN, a linear head, cross_entropy, clip_grad_norm_, Adagrad;
  fused  that NumPy loop's step written by hand as one Numba function (min_char_rnn.fused_step): what
         minigrad's generated whole step is measured against.

With `--demo lstm` (or elman) it times `minigrad demo`'s character model instead — that cell of 64
units, batch 8, Adam at 3e-3, clip norm:5 — compiled whole and through the engine only.

All start from the same weights, and the first steps' losses are checked to agree (so the
rates are of the same computation).  Each runs in a process of its own, one thread each
(OPENBLAS_NUM_THREADS=1, as the command sets; torch.set_num_threads(1)), the rounds alternating
the loops; a rate is the best of the rounds' timed runs of `--steps` steps.

    .venv/bin/python benchmarks/bench_charlm.py [--rounds 3] [--steps 400] [--demo lstm]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from alternating import alternating_rounds  # beside this script
from min_char_rnn import fused_step, hand_written_step

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, SEQ_LEN, LR, CLIP, EPS = 100, 25, 0.1, 5.0, 1e-8
LOOPS = ("minigrad", "engine", "numpy", "torch", "fused")


def text_ids(chars=35000):
    from minigrad_cli.text import Vocab
    text = (ROOT / "README.md").read_text(encoding="utf-8")[:chars]
    vocab = Vocab.of(text)
    return vocab.encode(text), len(vocab)


def minigrad_loop(whole_step=True, demo=None):
    """(one training step -> loss, the initial weights as arrays), through the command's own Trainer;
    `demo`: the cell of `minigrad demo`'s model, at its setting."""
    import minigrad as mg
    from minigrad_cli.charlm import CharModel, Trainer
    ids, V = text_ids()
    if demo:
        from minigrad_cli.demo import BATCH, HIDDEN as DEMO_HIDDEN
        model = CharModel(V, demo, DEMO_HIDDEN, 0, seed=0)
        trainer = Trainer(model, mg.optim.Adam(model.parameters(), lr=3e-3), ids, SEQ_LEN, BATCH, ("norm", CLIP),
                          "auto", whole_step=whole_step)
        return trainer.train_step, BATCH
    model = CharModel(V, "elman", HIDDEN, 0, seed=0)
    opt = mg.optim.Adagrad(model.parameters(), lr=LR, eps=EPS)
    trainer = Trainer(model, opt, ids, SEQ_LEN, 1, ("norm", CLIP), "auto", whole_step=whole_step)
    weights = [p.data.copy() for p in model.parameters()]  # weight_ih, weight_hh, bias_ih, bias_hh, head w, b
    return trainer.train_step, weights


def numpy_loop(weights):
    """min-char-rnn's loop on the same model: forward, hand-written BPTT, joint-norm clip, Adagrad."""
    return hand_written_step(weights, text_ids()[0], SEQ_LEN, CLIP, LR, EPS)


def torch_loop(weights):
    """A PyTorch eager loop on the same model."""
    import torch
    torch.set_num_threads(1)
    ids, V = text_ids()
    ids = torch.as_tensor(ids)
    rnn = torch.nn.RNN(V, HIDDEN, dtype=torch.float64)
    head = torch.nn.Linear(HIDDEN, V, dtype=torch.float64)
    with torch.no_grad():
        for p, w in zip([rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias],
                        weights):
            p.copy_(torch.as_tensor(w))
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adagrad(params, lr=LR, eps=EPS)
    windows = (len(ids) - 1) // SEQ_LEN
    carry = {"h": None, "step": 0}

    def step():
        s = carry["step"]
        pos = (s % windows) * SEQ_LEN
        xs = torch.nn.functional.one_hot(ids[pos:pos + SEQ_LEN], V).to(torch.float64).unsqueeze(1)
        ys = ids[pos + 1:pos + SEQ_LEN + 1]
        h0 = None if s % windows == 0 else carry["h"]
        out, h = rnn(xs, h0)
        loss = torch.nn.functional.cross_entropy(head(out[:, 0]), ys)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        carry["h"], carry["step"] = h.detach(), s + 1
        return loss.item()
    return step


def make(loop):
    step, weights = minigrad_loop(whole_step=loop != "engine")
    if loop == "fused":
        return fused_step(weights, text_ids()[0], SEQ_LEN, CLIP, LR, EPS)
    return step if loop in ("minigrad", "engine") else numpy_loop(weights) if loop == "numpy" else torch_loop(weights)


def check_same_losses(loops, steps=5):
    """The loops compute the same thing: their first losses agree (later ones drift apart by more than the
    rounding: Adagrad's first step moves every weight by about lr * sign(g), even where g is a rounding
    error of 1e-17 in one loop and 0 in another)."""
    made = {loop: make(loop) for loop in loops}
    got = {loop: [made[loop]() for _ in range(steps)] for loop in loops}
    for loop in loops[1:]:
        if not np.allclose(got[loop], got[loops[0]], rtol=1e-9, atol=0):
            worst = int(np.argmax(np.abs(np.subtract(got[loop], got[loops[0]]))))
            raise SystemExit(f"bench_charlm: {loop}'s losses differ from {loops[0]}'s at step {worst}: "
                             f"{got[loop][worst]!r} vs {got[loops[0]][worst]!r}")


def measure(loop, steps, reps, demo=None):
    """Characters per second: the fastest of `reps` runs of `steps` training steps, after a warm-up."""
    step, batch = minigrad_loop(loop != "engine", demo) if demo else (make(loop), 1)
    for _ in range(50):
        step()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * SEQ_LEN * batch / (time.perf_counter() - t0))
    return max(rates)


def available():
    out = ["minigrad", "engine", "numpy"]
    try:
        import torch  # noqa: F401
        out.append("torch")
    except ImportError:
        pass
    return out + ["fused"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400, help="training steps per timed run")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per process")
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--demo", choices=["lstm", "elman"], help="time minigrad demo's model of this cell instead")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: time one loop, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.reps, args.demo)))
        return
    loops = [lp for lp in available() if lp in args.loops.split(",") and (not args.demo or lp in ("minigrad", "engine"))]
    extra = ["--steps", args.steps, "--reps", args.reps] + (["--demo", args.demo] if args.demo else [])
    if not args.demo:
        check_same_losses(loops)
    rates = alternating_rounds(__file__, loops, args.rounds, extra)
    setting = (f"minigrad demo's model: {args.demo} 64, one-hot, seq-len {SEQ_LEN}, batch 8, adam 3e-3, clip norm:{CLIP}"
               if args.demo else
               f"min-char-rnn setting: elman {HIDDEN}, one-hot, seq-len {SEQ_LEN}, batch 1, adagrad {LR}, clip norm:{CLIP}")
    print(f"{setting}; README.md[:35000]; best of {args.rounds} alternating rounds  [load {os.getloadavg()[0]:.2f}]")
    from minigrad_cli.demo import BATCH
    chars = SEQ_LEN * (BATCH if args.demo else 1)  # per step
    for loop in loops:
        best = max(rates[loop])
        print(f"  {loop:9s} {best:9,.0f} chars/s  {chars / best * 1e3:6.3f} ms/step   "
              f"(rounds {min(rates[loop]):,.0f} – {best:,.0f})")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
