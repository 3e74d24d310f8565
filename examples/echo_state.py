"""An echo state network (Goodfellow et al. §10.8) of leaky units (§10.9.2) on Mackey–Glass.

Task: one-step-ahead prediction of the Mackey–Glass series (τ = 17), the reservoir-computing
benchmark: read x(t), predict x(t+1).  The reservoir — W_in, W and b drawn at random, W scaled to
spectral radius 0.9 — is frozen; only the readout o(t) = V h(t) + c learns, two ways:

    ridge      in closed form from the states of one run (EchoState.fit)
    gradient   Adam on the mean squared error over the same states (frozen, the reservoir's states
               do not change while V and c learn, so it runs once)

Prints the test NRMSE (RMSE / std of the series: 1 is "predict the mean") of both, and writes the
rolled and unrolled pictures, the frozen parameters marked in the table.
Run:  python examples/echo_state.py [--out DIR]
"""
import argparse
import pathlib
import time

import numpy as np

import minigrad as mg
import rnn
import viz
from minigrad_cli.tasks import mackey_glass


def nrmse(pred, want):
    return float(np.sqrt(np.mean((pred - want) ** 2)) / np.std(want))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="minigrad-out/examples", help="where the pictures go")
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps for the gradient-trained readout")
    ap.add_argument("--lr", type=float, default=0.01, help="its learning rate")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    series = mackey_glass(2001)
    xs, ys = series[:-1].reshape(-1, 1, 1), series[1:].reshape(-1, 1, 1)
    train, washout = 1500, 100
    print(f"Mackey-Glass (tau = 17), one step ahead: train on steps {washout}..{train}, "
          f"test on {train}..{len(xs)}")
    print(f"{'readout':<10} {'test NRMSE':>10} {'backend':>8} {'seconds':>8}")

    esn = rnn.EchoState(1, 200, output_size=1, spectral_radius=0.9, leak=0.5, rng=np.random.default_rng(0))
    t0 = time.perf_counter()
    esn.fit(xs[:train], ys[:train], ridge=1e-6, washout=washout)
    res = rnn.run(esn, xs)
    print(f"{'ridge':<10} {nrmse(res.outputs.data[train:], ys[train:]):>10.4f} {res.backend:>8} "
          f"{time.perf_counter() - t0:>8.1f}")

    # The same reservoir, its readout learnt by gradient instead.  The reservoir is frozen, so its
    # states are the same at every step of training: run it once, then train V and c on them.
    esn.V.data[...] = 0
    esn.c.data[...] = 0
    t0 = time.perf_counter()
    with mg.no_grad():
        states = rnn.run(esn, xs[:train]).states
    H = mg.tensor(np.stack([s[0].data for s in states[washout:]]).reshape(-1, esn.hidden_size))
    Y = mg.tensor(ys[washout:train].reshape(-1, 1))
    opt = mg.optim.Adam(esn.trainable(), lr=args.lr)
    for _ in range(args.steps):
        loss = mg.mse_loss(H @ esn.V.T + esn.c, Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = rnn.run(esn, xs)
    print(f"{'gradient':<10} {nrmse(res.outputs.data[train:], ys[train:]):>10.4f} {res.backend:>8} "
          f"{time.perf_counter() - t0:>8.1f}")

    viz.render(viz.draw_rolled(esn), out / "echo-state-rolled.svg")
    small = rnn.EchoState(1, 20, output_size=1, rng=np.random.default_rng(0))
    viz.render(viz.draw_unrolled(rnn.run(small, xs[:3], targets=ys[:3])), out / "echo-state-unrolled.svg")
    print(f"pictures in {out}/echo-state-*.svg")


if __name__ == "__main__":
    main()
