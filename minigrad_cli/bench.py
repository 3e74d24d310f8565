"""Forward + backward time of a recurrent layer: numba backend, graph backend, PyTorch, JAX.

    minigrad bench                                  # full table (same as benchmarks/bench_rnn.py)
    minigrad bench --quick                          # two small sizes, fewer repeats
    minigrad bench --cells lstm --sizes 100,8,64,64 --dtypes float32
    minigrad bench --startup                        # cold compile, and first call with a warm cache
    minigrad bench --networks                       # only the networks: Fig 10.3, Fig 10.11, an attention
                                                    # decoder, with their heads and losses

One timed call: run the layer over xs (T, B, I), loss = sum of all outputs,
backward into every weight and into xs.  Median of repeated calls after a warm-up
(the warm-up also compiles).  The ratio columns are PyTorch's and JAX's time over
ours (> 1: we are faster).  JAX runs `jax.jit(jax.grad(loss))` of the same cell
written as the body of a `jax.lax.scan`, in a process of its own whose blocks of
calls alternate with ours and PyTorch's.  PyTorch
and JAX are optional (`pip install '.[bench]'`); without them their columns are
blank.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import minigrad as mg
import minigrad.nn  # noqa: F401  (mg.nn.Parameter)
import rnn
from minigrad_cli.charlm import CELLS
from minigrad import Tensor

SIZES = [(100, 1, 32, 32), (100, 8, 64, 64), (100, 32, 128, 128), (100, 64, 256, 256), (50, 64, 512, 512),
         (1000, 1, 32, 32)]
QUICK = [(100, 1, 32, 32), (100, 8, 64, 64)]
GRAPH_MAX = 100 * 8 * 64  # T*B*H above which the graph backend is too slow to be worth timing

try:
    import torch
except ImportError:
    torch = None

HAVE_JAX = importlib.util.find_spec("jax") is not None  # imported only in the process that times it


def median_times(fns, min_reps=3, budget=1.0, blocks=4):
    """Median time of each function, timed in alternating blocks (a a a, b b b, a a a, ...) so that a
    slow spell of a shared machine falls on all of them alike.  Blocks, not single calls: the calls
    right after a switch find the other library's threads still spinning, so they are not counted.  A
    `Remote` is a function timed in a process of its own, a block at a time when its turn comes."""
    times = [[] for _ in fns]
    for fn in fns:
        if not isinstance(fn, Remote):
            fn()  # warm-up: compiles, fills caches (a Remote warmed up in its own process)
    reps, block_budget = -(-min_reps // blocks), budget / blocks
    for _ in range(blocks):
        for fn, ts in zip(fns, times):
            ts += fn.block(reps, block_budget) if isinstance(fn, Remote) else timed_block(fn, reps, block_budget)
    return [statistics.median(ts) for ts in times]


SETTLE = 0.01  # seconds of calls not counted at a block's start: GNU OpenMP's idle threads spin ~9 ms


def timed_block(fn, reps, budget):
    """One block: calls not counted for SETTLE seconds (one at least) — the library timed before may
    still have threads spinning on the cores, in this process or its own — then at least `reps` timed
    calls, more while within `budget` seconds (at most 50)."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < SETTLE:
        fn()
    ts, start = [], time.perf_counter()
    while len(ts) < reps or (time.perf_counter() - start < budget and len(ts) < 50):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


class Remote:
    """A step function built by `make` (an expression of this module) in a fresh Python process, timed
    there one block at a time: `block` asks for one and waits, asleep, for its times, so the two
    processes never run at once and neither's thread pool slows the other.  `without`: a library kept
    out of that process (sys.modules[name] = None makes its import fail), the other framework's."""

    def __init__(self, make, without="torch"):
        code = (f"import sys; sys.modules[{without!r}] = None; import numpy as np; from minigrad_cli import bench; "
                f"bench.serve_blocks(bench.{make})")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self._reply()  # "ready": built and warmed up

    def _reply(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"bench: the timing process exited with code {self.proc.returncode}")
        return line

    def block(self, reps, budget):
        self.proc.stdin.write(f"{reps} {budget}\n")
        self.proc.stdin.flush()
        return [float(t) for t in self._reply().split()]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve_blocks(fn):
    """The other end of `Remote`: warm up, then a timed block per request line "reps budget"."""
    fn()
    print("ready", flush=True)
    for line in sys.stdin:
        reps, budget = line.split()
        print(" ".join(map(repr, timed_block(fn, int(reps), float(budget)))), flush=True)


def median_time(fn, min_reps=3, budget=1.0):
    return median_times([fn], min_reps, budget)[0]


def ours(kind, size, dtype, backend):
    T, B, I, H = size
    cell = CELLS[kind](I, H, rng=np.random.default_rng(0), dtype=dtype)
    xs = Tensor(np.random.default_rng(1).standard_normal((T, B, I)).astype(dtype), requires_grad=True)

    def step():
        cell.zero_grad()
        xs.grad = None
        rnn.run(cell, xs, backend=backend).outputs.sum().backward()
    return step


def pytorch(kind, size, dtype):
    T, B, I, H = size
    layer = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H)
    layer = layer.to(getattr(torch, np.dtype(dtype).name))
    xs = torch.randn(T, B, I, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)

    def step():
        layer.zero_grad()
        xs.grad = None
        layer(xs)[0].sum().backward()
    return step


def jax_weights(kind, size, dtype):
    """Our cell's weights and input for a table row (the same draws as `ours`), as plain arrays in
    the layout JAX's loss takes: ((weight_ih, weight_hh, bias_ih, bias_hh), xs)."""
    T, B, I, H = size
    cell = CELLS[kind](I, H, rng=np.random.default_rng(0), dtype=dtype)
    xs = np.random.default_rng(1).standard_normal((T, B, I)).astype(dtype)
    return tuple(p.data for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)), xs


def jax_loss(kind):
    """loss(params, xs) = the sum of every step's output of a `kind` layer, in JAX: the cell's step
    is the body of a lax.scan over xs (T, B, I), from a zero state, in PyTorch's gate layout like
    rnn's cells: Elman h' = tanh(U x + b_ih + W h + b_hh); LSTM gates i, f, g, o; GRU r, z, n with
    n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h' = (1-z)*n + z*h."""
    import jax
    import jax.numpy as jnp
    sigmoid = jax.nn.sigmoid

    def elman(p, x, h):
        w_ih, w_hh, b_ih, b_hh = p
        h = jnp.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        return h, h

    def lstm(p, x, state):
        w_ih, w_hh, b_ih, b_hh = p
        h, c = state
        i, f, g, o = jnp.split(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        h = sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(p, x, h):
        w_ih, w_hh, b_ih, b_hh = p
        ar, az, an = jnp.split(x @ w_ih.T + b_ih, 3, axis=-1)
        br, bz, bn = jnp.split(h @ w_hh.T + b_hh, 3, axis=-1)
        r, z = sigmoid(ar + br), sigmoid(az + bz)
        n = jnp.tanh(an + r * bn)
        h = (1 - z) * n + z * h
        return h, h

    step = {"elman": elman, "lstm": lstm, "gru": gru}[kind]

    def loss(p, xs):
        H = p[1].shape[1]
        h0 = jnp.zeros((xs.shape[1], H), xs.dtype)
        _, hs = jax.lax.scan(lambda state, x: step(p, x, state), (h0, h0) if kind == "lstm" else h0, xs)
        return hs.sum()
    return loss


def jax_grad(kind, dtype):
    """jit(grad) of `jax_loss` with respect to the weights and xs; float64 turns on jax_enable_x64
    (without it JAX computes in float32 whatever it is given)."""
    import jax
    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    return jax.jit(jax.grad(jax_loss(kind), argnums=(0, 1)))


def jax_step(kind, size, dtype):
    import jax
    grad = jax_grad(kind, dtype)
    params, xs = jax_weights(kind, size, dtype)
    params, xs = jax.device_put(params), jax.device_put(xs)

    def step():
        jax.block_until_ready(grad(params, xs))
    return step


class _Fig103(rnn.Cell):
    """Goodfellow et al. Fig 10.3: h(t) = tanh(b + W h(t−1) + U x(t)), o(t) = c + V h(t), softmax NLL."""

    def __init__(self, I, H, K, dtype):
        super().__init__(I, H, dtype)
        self.U, self.W, self.b, self.V, self.c = _weights([(H, I), (H, H), (H,), (K, H), (K,)], dtype)

    def step(self, x, h):
        return (self.b + h @ self.W.T + x @ self.U.T).tanh()

    def output(self, h):
        return h @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


class _Fig1011(rnn.Bidirectional):
    """Fig 10.11: a GRU each way, o(t) = c + V [h(t); g(t)], softmax NLL."""

    def __init__(self, I, H, K, dtype):
        rng = np.random.default_rng(0)
        super().__init__(rnn.GRUCell(I, H, rng=rng, dtype=dtype), rnn.GRUCell(I, H, rng=rng, dtype=dtype))
        self.V, self.c = _weights([(K, 2 * H), (K,)], dtype)

    def output(self, state):
        return super().output(state) @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


class _Attention(rnn.Cell):
    """An additive-attention decoder (Bahdanau et al. 2015) over S encoder outputs E (S, B, H), the
    previous target's embedding as x(t) (teacher forcing): c(t) = Σ_s softmax_s(v·tanh(Wa h(t−1) +
    Ua e(s))) e(s), h(t) = tanh(U x(t) + W h(t−1) + C c(t) + b), o(t) = c + V h(t), softmax NLL."""
    S = 30

    def __init__(self, I, H, K, dtype):
        super().__init__(I, H, dtype)
        self.U, self.W, self.C, self.Wa, self.Ua, self.v, self.b, self.V, self.c = _weights(
            [(H, I), (H, H), (H, H), (H, H), (H, H), (H,), (H,), (K, H), (K,)], dtype)

    def step(self, x, h, context):
        scores = ((h @ self.Wa.T + context @ self.Ua.T).tanh() * self.v).sum(axis=-1)    # (S, B)
        a = mg.softmax(scores, axis=0)
        c = (a.reshape(*a.shape, 1) * context).sum(axis=0)
        return (x @ self.U.T + h @ self.W.T + c @ self.C.T + self.b).tanh()

    def output(self, h):
        return h @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


def _weights(shapes, dtype):
    rng = np.random.default_rng(0)
    return [mg.nn.Parameter((rng.standard_normal(s) * 0.3).astype(dtype)) for s in shapes]


NETWORKS = {"fig103": _Fig103, "fig1011": _Fig1011, "attend": _Attention}
NET_SIZES = [(100, 1, 32, 32, 32), (100, 8, 64, 64, 64)]


def net_data(size, dtype):
    """xs, class-index targets, and encoder outputs for the attention decoder."""
    T, B, I, H, K = size
    rng = np.random.default_rng(1)
    return (rng.standard_normal((T, B, I)).astype(dtype), rng.integers(0, K, (T, B)),
            rng.standard_normal((_Attention.S, B, H)).astype(dtype))


def ours_net(kind, size, dtype, backend):
    T, B, I, H, K = size
    net = NETWORKS[kind](I, H, K, dtype)
    xs, ys, E = net_data(size, dtype)
    E = Tensor(E, requires_grad=True)  # an encoder's outputs: their gradient is wanted
    context = {"context": E} if kind == "attend" else {}

    def step():
        net.zero_grad()
        E.grad = None
        rnn.run(net, xs, targets=ys, backend=backend, **context).loss.backward()
    return step


def pytorch_net(kind, size, dtype):
    """The same network as a user writes it in PyTorch: its step in a Python loop (eager), the loss at
    every step; the bidirectional one runs torch.nn.GRU both ways (one fused call each)."""
    T, B, I, H, K = size
    tdt = getattr(torch, np.dtype(dtype).name)
    xs_np, ys_np, E_np = net_data(size, dtype)
    xs, ys = torch.from_numpy(xs_np), torch.from_numpy(ys_np)
    if kind == "attend":
        ps = [torch.randn(*s, dtype=tdt, requires_grad=True)
              for s in [(H, I), (H, H), (H, H), (H, H), (H, H), (H,), (H,), (K, H), (K,)]]
        E = torch.from_numpy(E_np).requires_grad_()

        def step():
            U, W, C, Wa, Ua, v, b, V, c = ps
            for p in ps + [E]:
                p.grad = None
            keys = E @ Ua.T                      # once per sequence, as a PyTorch user writes it
            h, loss = torch.zeros(B, H, dtype=tdt), 0
            for t in range(T):
                a = torch.softmax(torch.tanh(h @ Wa.T + keys) @ v, dim=0)
                ctx = (a.unsqueeze(-1) * E).sum(0)
                h = torch.tanh(xs[t] @ U.T + h @ W.T + ctx @ C.T + b)
                loss = loss + torch.nn.functional.cross_entropy(h @ V.T + c, ys[t])
            loss.backward()
        return step
    if kind == "fig103":
        ps = [torch.randn(*s, dtype=tdt, requires_grad=True) for s in [(H, I), (H, H), (H,), (K, H), (K,)]]

        def step():
            U, W, b, V, c = ps
            for p in ps:
                p.grad = None
            h, loss = torch.zeros(B, H, dtype=tdt), 0
            for t in range(T):
                h = torch.tanh(b + h @ W.T + xs[t] @ U.T)
                loss = loss + torch.nn.functional.cross_entropy(h @ V.T + c, ys[t])
            loss.backward()
        return step
    gru = torch.nn.GRU(I, H, bidirectional=True).to(tdt)
    head = torch.nn.Linear(2 * H, K).to(tdt)

    def step():
        gru.zero_grad(), head.zero_grad()
        o = head(gru(xs)[0])
        torch.nn.functional.cross_entropy(o.reshape(T * B, K), ys.reshape(T * B), reduction="sum").div(B).backward()
    return step


def networks(args):
    """Each network against its PyTorch version timed in a process of its own (a `Remote`, taking turns
    with ours): PyTorch's thread pool, spinning after its own calls, slowed ours 3-7x when they
    alternated in one process."""
    print(f"\n{'network':8} {'dtype':8} {'T,B,I,H,K':>18} {'numba ms':>9} {'graph ms':>9} {'torch ms':>9} "
          f"{'torch/numba':>11} {'graph/numba':>11}")
    print(f"(attend: additive attention over S = {_Attention.S} encoder outputs, their gradient included)")
    for kind in NETWORKS:
        for dtype in args.dtypes:
            for size in NET_SIZES[:1] if args.quick else NET_SIZES:
                budget = 0.3 if args.quick else 1.0
                numba = ours_net(kind, size, dtype, "numba")
                if torch:
                    make = f"pytorch_net({kind!r}, {size!r}, np.{np.dtype(dtype).name})"
                    with Remote(make, without="jax") as theirs:
                        t_numba, t_torch = median_times([numba, theirs], budget=budget)
                else:
                    t_numba, t_torch = median_time(numba, budget=budget), None
                t_graph = (median_time(ours_net(kind, size, dtype, "graph"), min_reps=1, budget=budget)
                           if args.graph else None)
                r_torch = f"{t_torch / t_numba:11.2f}" if t_torch else ""
                r_graph = f"{t_graph / t_numba:11.1f}" if t_graph else ""
                print(f"{kind:8} {np.dtype(dtype).name:8} {','.join(map(str, size)):>18} {ms(t_numba)} "
                      f"{ms(t_graph):>9} {ms(t_torch):>9} {r_torch:>11} {r_graph:>11}", flush=True)


def ms(t):
    return "" if t is None else f"{t * 1e3:9.2f}"


def machine():
    """What the figures depend on: cores, the BLAS kernel under our products, PyTorch's threads."""
    from rnn.kernels import onednn
    from rnn.kernels.blas import blas_kernel, blas_rows
    from rnn.kernels.threads import SPLIT_WEIGHT_BYTES, min_batch, threads
    forced = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"cpus {os.cpu_count()}; OpenBLAS kernel {blas_kernel()}"
          f"{' (forced: ' + ', '.join(f'{k}={v}' for k, v in forced.items()) + ')' if forced else ''}, "
          f"per-step products through BLAS from {blas_rows()} batch rows; "
          f"large float32 products through {'oneDNN (' + onednn.library() + ')' if onednn.available() else 'OpenBLAS (no oneDNN)'}; "
          f"{f'kernels split batches of {min_batch()}+ rows between {threads()} threads where every recurrent weight is at most {SPLIT_WEIGHT_BYTES >> 20} MiB' if threads() > 1 else 'kernels on one thread'}; "
          f"torch {torch.__version__ + ', ' + str(torch.get_num_threads()) + ' threads' if torch else 'not installed'}; "
          f"jax {importlib.metadata.version('jax') + ' (own process)' if HAVE_JAX else 'not installed'}")


def table(args):
    machine()
    print(f"{'cell':6} {'dtype':8} {'T,B,I,H':>18} {'numba ms':>9} {'graph ms':>9} {'torch ms':>9} {'jax ms':>9} "
          f"{'torch/numba':>11} {'jax/numba':>9} {'graph/numba':>11}")
    for kind in args.cells:
        for dtype in args.dtypes:
            for size in args.sizes:
                budget = 0.3 if args.quick else 1.0
                numba, torch_fn = ours(kind, size, dtype, "numba"), pytorch(kind, size, dtype) if torch else None
                if HAVE_JAX:  # in a process of its own, taking turns with ours and PyTorch's blocks
                    with Remote(f"jax_step({kind!r}, {size!r}, np.{np.dtype(dtype).name})") as jax_fn:
                        times = median_times([numba, jax_fn] + ([torch_fn] if torch else []), budget=budget)
                else:
                    times = median_times([numba] + ([torch_fn] if torch else []), budget=budget)
                t_numba, t_jax, t_torch = (times[0], times[1] if HAVE_JAX else None,
                                           times[-1] if torch else None)
                T, B, _, H = size
                t_graph = (median_time(ours(kind, size, dtype, "graph"), min_reps=1, budget=budget)
                           if args.graph and T * B * H <= GRAPH_MAX else None)
                r_torch = f"{t_torch / t_numba:11.2f}" if t_torch else ""
                r_jax = f"{t_jax / t_numba:9.2f}" if t_jax else ""
                r_graph = f"{t_graph / t_numba:11.1f}" if t_graph else ""
                print(f"{kind:6} {np.dtype(dtype).name:8} {','.join(map(str, size)):>18} {ms(t_numba)} "
                      f"{ms(t_graph):>9} {ms(t_torch):>9} {ms(t_jax):>9} {r_torch:>11} {r_jax:>9} {r_graph:>11}",
                      flush=True)


STARTUP = """
import sys, time
t0 = time.perf_counter()
import numpy as np, rnn
from minigrad import Tensor
t1 = time.perf_counter()
cell = rnn.{cls}(8, 8, dtype=np.{dtype})
xs = Tensor(np.ones((3, 2, 8), dtype=np.{dtype}), requires_grad=True)
rnn.run(cell, xs, backend="numba").outputs.sum().backward()
print(time.perf_counter() - t1)
"""


def startup(args):
    print(f"{'cell':6} {'dtype':8} {'cold: generate+compile s':>25} {'warm cache: first call s':>25}")
    for kind in args.cells:
        for dtype in args.dtypes:
            code = STARTUP.format(cls=CELLS[kind].__name__, dtype=np.dtype(dtype).name)
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "MINIGRAD_CACHE": cache}
                times = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                              text=True, check=True).stdout.split()[-1]) for _ in range(2)]
            print(f"{kind:6} {np.dtype(dtype).name:8} {times[0]:25.2f} {times[1]:25.2f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="minigrad bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two small sizes, shorter timing")
    p.add_argument("--cells", default="elman,lstm,gru", help="comma-separated: elman, lstm, gru")
    p.add_argument("--sizes", default=None, help="semicolon-separated T,B,I,H tuples")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--no-graph", dest="graph", action="store_false", help="skip the graph backend")
    p.add_argument("--startup", action="store_true", help="time cold compilation and warm-cache first calls")
    p.add_argument("--no-networks", dest="networks", action="store_false",
                   help="skip the networks table (Fig 10.3 and Fig 10.11 with their softmax heads and losses)")
    p.add_argument("--networks", dest="only_networks", action="store_true", help="only the networks table")
    args = p.parse_args(argv)
    args.networks = args.networks and args.sizes is None and args.cells == "elman,lstm,gru"  # the full table's
    args.cells = args.cells.split(",")
    args.dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    args.sizes = ([tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";")] if args.sizes
                  else QUICK if args.quick else SIZES)
    if args.startup:
        startup(args)
    elif args.only_networks:
        machine()
        networks(args)
    else:
        table(args)
        if args.networks:
            networks(args)
    return 0


if __name__ == "__main__":
    main()
