"""Sequence reversal with an encoder–decoder (Goodfellow et al. §10.4), with and without attention.

Source: 5 to 8 symbols of 10; target: the source reversed, then eos.  Trains a GRU encoder and a GRU
decoder conditioned on C alone (context="initial") and one that attends over every encoder output
(additive, Bahdanau et al. 2015), then decodes held-out sequences (never trained on) greedily.
The score is exact-sequence accuracy: every token right, eos included.  Without attention C must
hold the whole sequence in one vector; with it, each step can look the source token up.

    .venv/bin/python benchmarks/bench_seq2seq.py [--steps 1500] [--batch 32] [--hidden 32]
"""
import argparse
import time

import numpy as np

import minigrad as mg
import rnn
from minigrad_cli.tasks import REVERSAL_SPECIALS, reversal

SYMBOLS = 10
VOCAB = SYMBOLS + len(REVERSAL_SPECIALS)


def build(attention, hidden, rng):
    enc = rnn.GRUCell(VOCAB, hidden, rng=rng)
    dec = rnn.GRUCell(VOCAB + (hidden if attention else 0), hidden, rng=rng)
    return rnn.Seq2Seq(enc, dec, VOCAB, context="attention" if attention else "initial", rng=rng,
                       **REVERSAL_SPECIALS)


def accuracy(model, src, tgt):
    tokens = model.decode(src, tgt.shape[0]).tokens
    return float(np.mean(np.all(tokens == tgt, axis=0)))


def train(attention, a, held_out, test):
    rng = np.random.default_rng(a.seed)
    model = build(attention, a.hidden, rng)
    opt = mg.optim.Adam(model.parameters(), lr=a.lr)
    start = time.perf_counter()
    for _ in range(a.steps):
        src, tgt = reversal(a.batch, rng, symbols=SYMBOLS, exclude=held_out)
        loss = model(src, tgt).loss
        opt.zero_grad()
        loss.backward()
        mg.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return accuracy(model, *test), loss.item(), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--test", type=int, default=1000, help="held-out sequences")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    test = reversal(a.test, np.random.default_rng(a.seed + 1000), symbols=SYMBOLS)
    held_out = {tuple(int(v) for v in col[col != REVERSAL_SPECIALS["pad"]]) for col in test[0].T}
    print(f"reversal of 5-8 symbols of {SYMBOLS}: {a.steps} Adam steps (lr {a.lr}, clip 5) of batch {a.batch}, "
          f"GRU encoder and decoder of {a.hidden}; {len(held_out)} held-out sequences, decoded greedily")
    print(f"{'decoder':<22}{'exact-sequence acc':>20}{'last loss':>11}{'seconds':>10}")
    scores = {}
    for attention in (True, False):
        acc, loss, secs = train(attention, a, held_out, test)
        scores[attention] = acc
        print(f"{'attention (additive)' if attention else 'C only':<22}{acc:>20.3f}{loss:>11.4f}{secs:>10.1f}",
              flush=True)
    print(f"exact-sequence accuracy: {scores[True]:.3f} {scores[False]:.3f}")


if __name__ == "__main__":
    main()
