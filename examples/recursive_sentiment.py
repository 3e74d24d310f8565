"""A recursive net (Goodfellow et al. §10.6, Fig. 10.14) learns the sentiment of phrases from their trees.

Task: phrases of a tiny grammar, given as binary trees.  A word — good, great, nice, fine or bad,
awful, dull, poor — is worth +1 or −1; "not" flips the phrase it modifies, "very" doubles it, and two
phrases joined add up: ("not", ("very", "good")) is worth −2, (("very", "bad"), "good") −1.  The
label is the value's sign (phrases worth 0 are not generated).  Neither counting positive words nor
reading the words in any fixed order solves it: the tree says what "not" and "very" apply to.

An `rnn.RecursiveCell` reads one-hot words at its leaves (so V is the word embedding), combines
children with U (left) and W (right) and classifies the root with W_out, c.  It trains with Adam on
freshly generated phrases, batching the phrases of one tree shape together, then prints its accuracy
on held-out phrases beside the majority class's, by phrase depth, and its probability of "positive"
for a few phrases.  It writes the picture of "not (very good)" after one backward pass, each state
coloured by ‖∂L/∂h‖.  Well under a minute.  Run:  python examples/recursive_sentiment.py [--out DIR]
"""
import argparse
import pathlib
import time
from collections import defaultdict

import numpy as np

import minigrad as mg
import rnn
import viz

POLARITY = {"good": 1, "great": 1, "nice": 1, "fine": 1, "bad": -1, "awful": -1, "dull": -1, "poor": -1}
VOCAB = list(POLARITY) + ["not", "very"]
ONEHOT = {w: np.eye(len(VOCAB))[i] for i, w in enumerate(VOCAB)}


def phrase(rng, depth, word=0.3):
    """A random phrase at most `depth` compositions deep, and its value; `word`: the chance that a
    phrase is a single word (before the depth runs out)."""
    if depth == 0 or rng.random() < word:
        word = VOCAB[rng.integers(len(POLARITY))]
        return word, POLARITY[word]
    kind = rng.integers(3)
    if kind == 2:
        (a, va), (b, vb) = phrase(rng, depth - 1), phrase(rng, depth - 1)
        return (a, b), va + vb
    p, v = phrase(rng, depth - 1)
    return (("not", p), -v) if kind == 0 else (("very", p), 2 * v)


def dataset(rng, n, depth=4):
    """n phrases with a nonzero value: (phrase, label) with label 1 for positive."""
    out = []
    while len(out) < n:
        p, v = phrase(rng, depth, word=0)   # a phrase, not a lone word
        if v != 0:
            out.append((p, int(v > 0)))
    return out


def shape(p):
    """(the phrase's bracketing with its words numbered left to right, the words): the key by which
    phrases are batched, and what fills it."""
    words = []

    def walk(q):   # phrases here are a few levels deep: plain recursion is clear and safe
        if isinstance(q, tuple):
            return tuple(walk(c) for c in q)
        words.append(q)
        return len(words) - 1
    return walk(p), words


def batches(data):
    """One rnn.Tree per tree shape: leaf k holds the one-hot k-th words of all its phrases, (B, vocab)."""
    groups = defaultdict(list)
    for p, label in data:
        s, words = shape(p)
        groups[s].append((words, label))
    for s, rows in groups.items():
        x = np.array([[ONEHOT[w] for w in words] for words, _ in rows])   # (B, leaves, vocab)
        yield rnn.tree(s, leaf=lambda k, x=x: x[:, k]), np.array([label for _, label in rows])


def accuracy(cell, data):
    right = 0
    with mg.no_grad():
        for t, y in batches(data):
            right += int((rnn.run_tree(cell, t).output.data.argmax(axis=1) == y).sum())
    return right / len(data)


def word_count(p):
    """What ignoring the tree gives: the sign of the words' polarities added up (ties: positive)."""
    _, words = shape(p)
    return int(sum(POLARITY.get(w, 0) for w in words) >= 0)


def depth_of(p):
    return 1 + max(depth_of(c) for c in p) if isinstance(p, tuple) else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="minigrad-out/examples", help="where the picture goes")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps, each on a fresh batch of phrases")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    cell = rnn.RecursiveCell(len(VOCAB), 24, output_size=2, rng=rng)
    opt = mg.optim.Adam(cell.parameters(), lr=0.02)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        data = dataset(rng, 64)
        opt.zero_grad()
        for t, y in batches(data):   # each shape's mean loss, weighted by its share of the batch
            (rnn.run_tree(cell, t, target=y).loss * (len(y) / len(data))).backward()
        mg.clip_grad_norm_(opt.params, 5.0)
        opt.step()
    seconds = time.perf_counter() - t0

    test = dataset(np.random.default_rng(12345), 2000)
    share = np.mean([y for _, y in test])
    print(f"sentiment of {len(test)} held-out phrases (not flips, very doubles, joined phrases add); "
          f"{args.steps} Adam steps of 64 phrases, {seconds:.1f} s")
    print(f"{'model':<34} {'accuracy':>8}")
    print(f"{'majority class':<34} {max(share, 1 - share):>8.3f}")
    print(f"{'sign of the words, tree ignored':<34} {np.mean([word_count(p) == y for p, y in test]):>8.3f}")
    print(f"{'recursive net, H = 24':<34} {accuracy(cell, test):>8.3f}")
    by_depth = defaultdict(list)
    for p, y in test:
        by_depth[depth_of(p)].append((p, y))
    for d in sorted(by_depth):
        print(f"{f'  phrases of depth {d} ({len(by_depth[d])})':<34} {accuracy(cell, by_depth[d]):>8.3f}")

    print("p(positive):")
    for p in [("not", ("very", "good")), ("very", "bad"), (("very", "bad"), "good"), ("not", ("not", "dull"))]:
        with mg.no_grad():
            o = rnn.run_tree(cell, rnn.tree(p, leaf=ONEHOT)).output
        print(f"  {rnn.tree(p, leaf=ONEHOT).phrase():<24} {o.softmax().data[0, 1]:.3f}")

    example = rnn.run_tree(cell, rnn.tree(("not", ("very", "good")), leaf=ONEHOT), target=0)
    example.loss.backward()
    viz.render(viz.draw_tree(example, grad=True), out / "recursive-not-very-good.svg")
    print(f"picture in {out}/recursive-not-very-good.svg")


if __name__ == "__main__":
    main()
