"""An encoder–decoder with attention (Goodfellow et al. §10.4, Fig. 10.12; Bahdanau et al. 2015)
that learns to reverse sequences.

Task: 5 to 8 symbols of 10 in, the same reversed (then eos) out.  A GRU encoder reads the source;
a GRU decoder, teacher-forced in training, writes the target one token at a time while attending
over every encoder output.  Prints the exact-sequence accuracy on held-out sequences (decoded
greedily, never trained on) and writes three pictures: the unrolled encoder → C → decoder of one
decoded sequence, its alignment α(t, s) as a heat map — reversal shows as the anti-diagonal — and
one training batch's graph with its teacher forcing and losses.  (benchmarks/bench_seq2seq.py
trains longer, and a decoder without attention beside it.)
Run:  python examples/seq2seq.py [--out DIR]
"""
import argparse
import pathlib
import time

import numpy as np

import minigrad as mg
import rnn
import viz
from minigrad_cli.tasks import REVERSAL_SPECIALS, reversal

SYMBOLS = 10
VOCAB = SYMBOLS + len(REVERSAL_SPECIALS)
NAMES = {v: k for k, v in REVERSAL_SPECIALS.items()}


def word(token):
    return NAMES.get(int(token), chr(ord("a") + int(token) - 3))   # symbols as letters: a, b, c, ...


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="minigrad-out/examples", help="where the pictures go")
    ap.add_argument("--steps", type=int, default=400, help="Adam steps")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(0)
    H = 32
    model = rnn.Seq2Seq(rnn.GRUCell(VOCAB, H, rng=rng), rnn.GRUCell(VOCAB + H, H, rng=rng), VOCAB,
                        context="attention", attention="additive", rng=rng, **REVERSAL_SPECIALS)
    test_src, test_tgt = reversal(500, np.random.default_rng(1), symbols=SYMBOLS)
    held_out = {tuple(int(v) for v in col[col != 0]) for col in test_src.T}
    opt = mg.optim.Adam(model.parameters(), lr=0.01)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        src, tgt = reversal(32, rng, symbols=SYMBOLS, exclude=held_out)
        loss = model(src, tgt).loss
        opt.zero_grad()
        loss.backward()
        mg.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    tokens = model.decode(test_src, test_tgt.shape[0]).tokens
    acc = float(np.mean(np.all(tokens == test_tgt, axis=0)))
    print(f"reversal, {args.steps} steps of 32 sequences: held-out exact-sequence accuracy {acc:.3f} "
          f"({len(held_out)} sequences; last loss {loss.item():.4f}; {time.perf_counter() - t0:.1f} s)")

    src = np.array([[3], [4], [5], [6], [7]])                  # a b c d e
    d = model.decode(src, 6)
    got = [word(t) for t in d.tokens[:, 0]]
    print(f"decode({' '.join(word(t) for t in src[:, 0])}) = {' '.join(got)}")
    viz.render(viz.draw_seq2seq(d.result), out / "seq2seq-decoded.svg")
    viz.render(viz.draw_attention((d, 0), source=[word(t) for t in src[:, 0]], target=got),
               out / "seq2seq-attention.svg")
    small_src, small_tgt = reversal(1, np.random.default_rng(2), lengths=(3, 3), symbols=SYMBOLS)
    viz.render(viz.draw_seq2seq(model(small_src, small_tgt)), out / "seq2seq-training.svg")
    print(f"pictures in {out}/seq2seq-*.svg")


if __name__ == "__main__":
    main()
