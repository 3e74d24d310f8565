"""Per-op cost of the engine on small tensors, forward + backward, beside other autodiff engines.

The workload is a chain of element-wise ops on (8,) vectors — y = tanh(y * w + b), `--layers` times,
then a sum — and one backward to x, w and b.  µs/op is the time of forward + backward divided by the
number of forward ops (3 per layer + the sum): at this size every engine measures its per-op Python
and bookkeeping, not arithmetic.

Each engine runs in a process of its own (PyTorch's thread pool slows whoever shares its process;
torch is pinned to one thread, as it is fastest for tensors this small), and the rounds alternate
the engines, so that the load of a shared machine falls on all of them alike.  Each number is the
fastest batch of any round.  micrograd (pip's release, which has no tanh: one is added to its Value
in its own style) is scalar-valued: its "op" on an (8,) vector is 8 of its Value ops, which is what
it would take to compute the same thing.  Engines not installed are skipped.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_engine.py [--rounds 5] [--layers 30]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from alternating import alternating_rounds  # beside this script

N = 8
ENGINES = ("minigrad", "torch", "autograd", "micrograd")


def _values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(N) * 0.5 for _ in range(3)]


def chain_minigrad(layers):
    import minigrad as mg
    x0, w0, b0 = _values()

    def once():
        x, w, b = (mg.Tensor(v, requires_grad=True) for v in (x0, w0, b0))
        y = x
        for _ in range(layers):
            y = (y * w + b).tanh()
        y.sum().backward()
        return x.grad
    return once


def chain_torch(layers):
    import torch
    torch.set_num_threads(1)
    x0, w0, b0 = (torch.tensor(v) for v in _values())

    def once():
        x, w, b = (v.clone().requires_grad_(True) for v in (x0, w0, b0))
        y = x
        for _ in range(layers):
            y = torch.tanh(y * w + b)
        y.sum().backward()
        return x.grad.numpy()
    return once


def chain_autograd(layers):
    import autograd
    import autograd.numpy as anp
    x0, w0, b0 = _values()

    def f(x, w, b):
        y = x
        for _ in range(layers):
            y = anp.tanh(y * w + b)
        return anp.sum(y)
    df = autograd.grad(f, (0, 1, 2))

    def once():
        return df(x0, w0, b0)[0]
    return once


def chain_micrograd(layers):
    import math

    from micrograd.engine import Value

    def tanh(self):  # micrograd's pip release has relu but no tanh: one more op, written in its style
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = _backward
        return out
    Value.tanh = tanh
    x0, w0, b0 = _values()

    def once():
        x = [Value(float(v)) for v in x0]
        w = [Value(float(v)) for v in w0]
        b = [Value(float(v)) for v in b0]
        y = x
        for _ in range(layers):
            y = [(yi * wi + bi).tanh() for yi, wi, bi in zip(y, w, b)]
        total = y[0]
        for yi in y[1:]:
            total = total + yi
        total.backward()
        return np.array([v.grad for v in x])
    return once


CHAINS = {"minigrad": chain_minigrad, "torch": chain_torch, "autograd": chain_autograd,
          "micrograd": chain_micrograd}


def measure(engine, layers, reps, seconds):
    """The fastest of `reps` timed batches of about `seconds` each, after a warm-up: µs per op."""
    once = CHAINS[engine](layers)
    ops = 3 * layers + 1
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.2:
        once()
        n += 1
    per_batch = max(1, int(n * seconds / 0.2))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(per_batch):
            once()
        times.append((time.perf_counter() - t0) / per_batch / ops * 1e6)
    return float(min(times))  # the least disturbed batch: other processes share the machine


def check_same_gradients(layers):
    """Every installed engine computes the same dL/dx (so the timings are of the same computation)."""
    ref = None
    for engine in available():
        got = np.asarray(CHAINS[engine](layers)(), dtype=np.float64)
        if ref is None:
            ref = got
        elif not np.allclose(got, ref, rtol=1e-9, atol=1e-12):
            raise SystemExit(f"bench_engine: {engine} computes a different gradient: {got} vs {ref}")


def available():
    out = []
    for engine in ENGINES:
        module = {"minigrad": "minigrad", "torch": "torch", "autograd": "autograd", "micrograd": "micrograd.engine"}
        try:
            __import__(module[engine])
        except ImportError:
            continue
        out.append(engine)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds, one process per engine each")
    ap.add_argument("--layers", type=int, default=30, help="mul-add-tanh layers in the chain")
    ap.add_argument("--reps", type=int, default=5, help="timed batches per process")
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one timed batch")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: time one engine, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.layers, args.reps, args.seconds)))
        return
    engines = [e for e in available() if e in args.engines.split(",")]
    check_same_gradients(args.layers)
    results = alternating_rounds(__file__, engines, args.rounds,
                                 ["--layers", args.layers, "--reps", args.reps, "--seconds", args.seconds])
    print(f"chain of {args.layers} x (mul, add, tanh) + sum on ({N},) float64, forward + backward; "
          f"µs per op, best of {args.rounds} alternating rounds (fastest batch)  [load {os.getloadavg()[0]:.2f}]")
    base = min(results["minigrad"]) if "minigrad" in results else None
    for engine in engines:
        best = min(results[engine])
        spread = f"{min(results[engine]):7.2f} – {max(results[engine]):7.2f}"
        ratio = f"{best / base:5.2f}x minigrad" if base else ""
        print(f"  {engine:10s} {best:8.2f} µs/op   (rounds {spread})  {ratio}")


if __name__ == "__main__":
    main()
