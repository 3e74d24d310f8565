"""The adding problem (Hochreiter & Schmidhuber 1997): can a cell carry two numbers across T steps?

Prints, for each cell, the held-out mean squared error after training, beside
the 0.167 baseline of always answering 1.  The seeds' claim: at T=100 an
LSTM gets well below the baseline, a tanh Elman RNN stays near it.  --flow λ
adds a row: the tanh net trained on L + λΩ, Ω the information-flow regulariser
of Pascanu et al. 2013 (rnn.flow_regularizer), on the explicit graph.

    .venv/bin/python benchmarks/bench_adding.py [--T 100] [--steps 1500] [--cells lstm,elman] [--flow 1]
"""
import argparse
import time

import numpy as np

from minigrad_cli.tasks import BASELINES, adding, fit


def gradient_reach(model, T, seed):
    """‖∂L/∂h(1)‖ / ‖∂L/∂h(T)‖ on fresh sequences: how much of the answer's error reaches the first step."""
    xs, ys = adding(T, 64, np.random.default_rng(seed + 2))
    loss, result = model.loss(xs, ys)
    loss.backward()
    norms = [np.linalg.norm(s[0].grad) for s in result.states]
    return norms[0] / norms[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--cells", default="lstm,elman")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--flow", type=float, default=0.0, metavar="λ",
                   help="also train the tanh net with λ times the regulariser Ω (0: not)")
    a = p.parse_args()
    print(f"adding problem, T={a.T}, {a.steps} steps of batch {a.batch}, hidden {a.hidden}, Adam lr 1e-2, "
          f"clip norm 1; baseline MSE {BASELINES['adding'](a.T):.4f}")
    runs = [(cell, cell, 0.0) for cell in a.cells.split(",")]
    if a.flow:
        runs.append((f"elman+Ω λ={a.flow:g}", "elman", a.flow))
    w = max(8, *(len(label) + 2 for label, _, _ in runs))
    print(f"{'cell':<{w}}{'held-out MSE':>14}{'vs baseline':>13}{'|dL/dh(1)|/|dL/dh(T)|':>24}{'seconds':>10}")
    for label, cell, flow in runs:
        start = time.perf_counter()
        model, mse = fit("adding", cell, a.T, a.hidden, a.steps, a.batch, backend=a.backend, seed=a.seed, flow=flow)
        seconds = time.perf_counter() - start
        print(f"{label:<{w}}{mse:>14.4f}{mse / BASELINES['adding'](a.T):>12.2f}x"
              f"{gradient_reach(model, a.T, a.seed):>24.2e}{seconds:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
