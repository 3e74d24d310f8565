"""Deep recurrent nets, the three ways of Goodfellow et al. Fig. 10.13, on one toy task.

Task: y(t) = x(t−1) · x(t−2) for x uniform in [−1, 1] — it needs a memory of two steps and a
product, so a net must both carry and combine.  Predicting 0 scores the task's variance, 1/9.

    (a) rnn.Stacked([cell1, cell2]): layers of states, each reading the one below at the same step
    (b) a deep transition: an MLP between h(t−1) and h(t), written as a custom cell
    (c) the same with a skip connection: h(t−1) also reaches h(t) directly, so the shortest path
        between steps is one layer again (the figure's point: depth without long gradient paths)

Each trains for a few hundred Adam steps (under a minute in all), prints its test MSE, and writes
its rolled and unrolled pictures.  Run:  python examples/deep_rnn.py [--out DIR]
"""
import argparse
import pathlib
import time

import numpy as np

import minigrad as mg
import rnn
import viz
from minigrad.nn import Parameter


class DeepTransition(rnn.Cell):
    """Fig. 10.13b: h(t) = tanh(W2 z(t) + b2),  z(t) = tanh(W1 h(t−1) + U x(t) + b1)."""

    def __init__(self, input_size, hidden_size, skip=False, rng=None):
        super().__init__(input_size, hidden_size)
        rng = rng if rng is not None else np.random.default_rng()
        H, s = hidden_size, np.sqrt(3 / hidden_size)  # Glorot-uniform bound for square weights
        self.U = Parameter(rng.uniform(-s, s, (H, input_size)))
        self.W1 = Parameter(rng.uniform(-s, s, (H, H)))
        self.W2 = Parameter(rng.uniform(-s, s, (H, H)))
        self.b1, self.b2 = Parameter(np.zeros(H)), Parameter(np.zeros(H))
        if skip:  # Fig. 10.13c: the shortcut h(t−1) → h(t)
            self.W = Parameter(rng.uniform(-s, s, (H, H)))

    def step(self, x, h):
        z = (x @ self.U.T + h @ self.W1.T + self.b1).tanh().named("z")
        pre = z @ self.W2.T + self.b2
        if hasattr(self, "W"):
            pre = pre + h @ self.W.T
        return pre.tanh()


def batch(rng, T, B):
    xs = rng.uniform(-1, 1, (T, B, 1))
    ys = np.zeros_like(xs)
    ys[2:] = xs[1:-1] * xs[:-2]
    return xs, ys


def train(model, rng, steps, T=20, B=32, lr=0.01):
    head = mg.nn.Linear(model.emits, 1, rng=rng)
    opt = mg.optim.Adam(model.parameters() + head.parameters(), lr=lr)
    for _ in range(steps):
        xs, ys = batch(rng, T, B)
        res = rnn.run(model, xs)
        loss = mg.mse_loss(head(res.outputs[2:]), mg.tensor(ys[2:]))
        opt.zero_grad()
        loss.backward()
        mg.clip_grad_norm_(opt.params, 1.0)
        opt.step()
    xs, ys = batch(np.random.default_rng(123), T, 256)
    with mg.no_grad():
        res = rnn.run(model, xs)
        return mg.mse_loss(head(res.outputs[2:]), mg.tensor(ys[2:])).item(), res.backend


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="minigrad-out/examples", help="where the pictures go")
    ap.add_argument("--steps", type=int, default=400, help="Adam steps per model")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    H = 16
    models = {
        "a-stacked": rnn.Stacked([rnn.ElmanCell(1, H, rng=rng), rnn.ElmanCell(H, H, rng=rng)]),
        "b-deep-transition": DeepTransition(1, H, rng=rng),
        "c-deep-transition-skip": DeepTransition(1, H, skip=True, rng=rng),
    }
    print(f"y(t) = x(t-1) x(t-2); predicting 0 scores {1 / 9:.4f}")
    print(f"{'model (Fig. 10.13)':<24} {'test MSE':>9} {'backend':>8} {'seconds':>8}")
    for name, model in models.items():
        t0 = time.perf_counter()
        mse, backend = train(model, np.random.default_rng(1), args.steps)
        print(f"{name:<24} {mse:>9.4f} {backend:>8} {time.perf_counter() - t0:>8.1f}")
        # a layered net reads best as blocks; a deep transition only shows in its ops
        detail = "block" if isinstance(model, rnn.Stacked) else "ops"
        viz.render(viz.draw_rolled(model, detail=detail), out / f"deep-{name}-rolled.svg")
        viz.render(viz.draw_unrolled(model, steps=3), out / f"deep-{name}-unrolled.svg")
    print(f"pictures in {out}/deep-*.svg")


if __name__ == "__main__":
    main()
