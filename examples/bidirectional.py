"""A bidirectional recurrent net (Goodfellow et al. §10.3, Fig. 10.11) where the future matters.

Task: y(t) = x(t−1) + x(t+1) for x uniform in [−1, 1].  A net that reads left to right knows x(t−1)
but can only guess x(t+1): its error cannot fall below Var x(t+1) = 1/3.  `rnn.Bidirectional` runs
a second chain right to left, so o(t) sees both neighbours and the error falls towards 0.

Trains both for a few hundred Adam steps (well under a minute), prints their test MSE against that
1/3 floor, and writes the rolled and unrolled pictures of the bidirectional net: the two chains as
two rows with opposite arrows.  Run:  python examples/bidirectional.py [--out DIR]
"""
import argparse
import pathlib
import time

import numpy as np

import minigrad as mg
import rnn
import viz


def batch(rng, T, B):
    xs = rng.uniform(-1, 1, (T, B, 1))
    ys = xs[:-2] + xs[2:]          # the targets of steps 1 .. T−2 (0-based), which have both neighbours
    return xs, ys


def train(model, rng, steps, T=12, B=32, lr=0.02):
    head = mg.nn.Linear(model.emits, 1, rng=rng)
    opt = mg.optim.Adam(model.parameters() + head.parameters(), lr=lr)
    for _ in range(steps):
        xs, ys = batch(rng, T, B)
        loss = mg.mse_loss(head(rnn.run(model, xs).outputs[1:-1]), mg.tensor(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    xs, ys = batch(np.random.default_rng(123), T, 4000)
    with mg.no_grad():
        res = rnn.run(model, xs)
        return mg.mse_loss(head(res.outputs[1:-1]), mg.tensor(ys)).item(), res.backend


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="minigrad-out/examples", help="where the pictures go")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps per model")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    H = 12
    models = {
        "left to right (GRU)": rnn.GRUCell(1, H, rng=rng),
        "bidirectional (GRU, GRU)": rnn.Bidirectional(rnn.GRUCell(1, H, rng=rng), rnn.GRUCell(1, H, rng=rng)),
    }
    print("y(t) = x(t-1) + x(t+1); reading left to right only, the expected error is at least 1/3")
    print(f"{'model':<26} {'test MSE':>9} {'backend':>8} {'seconds':>8}")
    for name, model in models.items():
        t0 = time.perf_counter()
        mse, backend = train(model, np.random.default_rng(1), args.steps)
        print(f"{name:<26} {mse:>9.4f} {backend:>8} {time.perf_counter() - t0:>8.1f}")
    bi = models["bidirectional (GRU, GRU)"]
    viz.render(viz.draw_rolled(bi), out / "bidirectional-rolled.svg")
    viz.render(viz.draw_unrolled(bi, steps=4), out / "bidirectional-unrolled.svg")
    print(f"pictures in {out}/bidirectional-*.svg")


if __name__ == "__main__":
    main()
