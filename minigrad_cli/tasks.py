"""Synthetic long-dependency tasks from the RNN literature, as data generators.

adding (Hochreiter & Schmidhuber 1997): each step carries a value in [0, 1]
and a marker; exactly two steps are marked, one in each half.  The target is
the sum of the two marked values.  Always answering 1 scores MSE = Var = 1/6
(≈ 0.167): a model must beat that to have carried information across ~T/2 steps.

copy (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): ten symbols from
an alphabet of 8, then T-1 blanks and a delimiter, then ten more blanks during
which the ten symbols must be repeated.  Guessing uniformly after the delimiter
and blank before it costs 10·ln 8 / (T + 20) nats per step.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
import rnn
from minigrad.clip import clip_and_check
from minigrad.nn import Linear, Module

from .charlm import CELLS

COPY_LEN, COPY_SYMBOLS = 10, 8
BLANK, DELIM = COPY_SYMBOLS, COPY_SYMBOLS + 1


def adding(T, batch, rng):
    """xs (T, B, 2) and targets (B, 1)."""
    values = rng.uniform(0, 1, (T, batch))
    marks = np.zeros((T, batch))
    first = rng.integers(0, max(1, T // 2), batch)
    second = rng.integers(T // 2, T, batch) if T > 1 else first
    marks[first, np.arange(batch)] = 1
    marks[second, np.arange(batch)] = 1
    return np.stack([values, marks], axis=-1), (values * marks).sum(0)[:, None]


def copy_memory(T, batch, rng):
    """xs (T + 20, B, 10) one-hot and integer targets (T + 20, B)."""
    symbols = rng.integers(0, COPY_SYMBOLS, (COPY_LEN, batch))
    ids = np.full((T + 2 * COPY_LEN, batch), BLANK)
    ids[:COPY_LEN] = symbols
    ids[T + COPY_LEN - 1] = DELIM
    targets = np.full_like(ids, BLANK)
    targets[-COPY_LEN:] = symbols
    return np.eye(COPY_SYMBOLS + 2)[ids], targets


REVERSAL_SPECIALS = {"pad": 0, "bos": 1, "eos": 2}   # token ids; the symbols are 3, 4, ...


def reversal(batch, rng, lengths=(5, 8), symbols=10, exclude=()):
    """Sequence reversal, the encoder–decoder's test (Sutskever et al. 2014 reversed the source for
    the opposite reason): `batch` random sequences of `symbols` symbols, lengths in `lengths`
    (inclusive), as source tokens (S, B) and target tokens (S + 1, B) — the source reversed, then
    eos — both padded at the end with pad.  Sequences in `exclude` (a set of tuples, a held-out set)
    are drawn again."""
    lo, hi = lengths
    seqs = []
    while len(seqs) < batch:
        seq = tuple(int(v) for v in rng.integers(3, 3 + symbols, rng.integers(lo, hi + 1)))
        if seq not in exclude:
            seqs.append(seq)
    S = max(len(q) for q in seqs)
    src = np.full((S, batch), REVERSAL_SPECIALS["pad"])
    tgt = np.full((S + 1, batch), REVERSAL_SPECIALS["pad"])
    for b, q in enumerate(seqs):
        src[:len(q), b] = q
        tgt[:len(q), b] = q[::-1]
        tgt[len(q), b] = REVERSAL_SPECIALS["eos"]
    return src, tgt


def mackey_glass(n, tau=17, beta=0.2, gamma=0.1, power=10, dt=0.1, discard=500, seed=0):
    """n samples, one per time unit, of the Mackey–Glass delay equation (Mackey & Glass 1977)
    dx/dt = beta x(t - tau) / (1 + x(t - tau)^power) - gamma x(t): chaotic for tau = 17, the
    benchmark of echo state networks (Jaeger 2001).  Euler steps of `dt`; the first `discard`
    samples, the transient, are dropped."""
    rng = np.random.default_rng(seed)
    per, lag = int(round(1 / dt)), int(round(tau / dt))
    total = (n + discard) * per
    x = np.empty(total + lag + 1)
    x[:lag + 1] = 1.2 + 0.01 * rng.standard_normal(lag + 1)
    for i in range(lag, total + lag):
        past = x[i - lag]
        x[i + 1] = x[i] + dt * (beta * past / (1 + past ** power) - gamma * x[i])
    return x[lag + 1:][::per][discard:discard + n]


BASELINES = {"adding": lambda T: 1 / 6, "copy": lambda T: COPY_LEN * np.log(COPY_SYMBOLS) / (T + 2 * COPY_LEN)}


class TaskModel(Module):
    """A cell and a linear read-out: of the last state (adding) or of every state (copy)."""

    def __init__(self, task, cell="lstm", hidden=64, seed=0):
        rng = np.random.default_rng(seed)
        self.task = task
        self.skipped = 0   # updates skipped for a non-finite gradient
        n_in, n_out = (2, 1) if task == "adding" else (COPY_SYMBOLS + 2, COPY_SYMBOLS + 2)
        self.cell = CELLS[cell](n_in, hidden, rng=rng)
        self.head = Linear(hidden, n_out, rng=rng)

    def loss(self, xs, targets, backend="auto", create_graph=False):
        result = rnn.run(self.cell, mg.Tensor(xs), backend=backend, create_graph=create_graph)
        if self.task == "adding":
            return mg.mse_loss(self.head(result.outputs[-1]), targets), result
        T, B, H = result.outputs.shape
        return mg.cross_entropy(self.head(result.outputs.reshape(T * B, H)), targets.reshape(-1)), result


GENERATORS = {"adding": adding, "copy": copy_memory}


def fit(task, cell, T, hidden=64, steps=1000, batch=32, optimizer=None, clip=("norm", 1.0), backend="auto",
        seed=0, on_step=None, flow=0.0):
    """Train on fresh batches; returns the model and its held-out loss on 512 unseen sequences.

    flow: λ, to train on L + λΩ, Ω Pascanu et al.'s information-flow regulariser (rnn.flow_regularizer).
    Ω differentiates a recorded backward, so those training runs are made with create_graph=True: on the
    unfolded graph, the fused kernel's backward being first-order only."""
    if flow and backend == "numba":
        raise ValueError("fit: flow= (the regulariser Ω) needs the unfolded graph; use backend='graph' or 'auto'")
    rng = np.random.default_rng(seed)
    model = TaskModel(task, cell, hidden, seed=seed)
    opt = optimizer(model.parameters()) if optimizer else mg.optim.Adam(model.parameters(), lr=1e-2)
    make = GENERATORS[task]
    for _ in range(steps):
        xs, ys = make(T, batch, rng)
        loss, result = model.loss(xs, ys, backend, create_graph=bool(flow))
        model.zero_grad()
        (loss + flow * rnn.flow_regularizer(result, loss) if flow else loss).backward()
        if clip_and_check(model.parameters(), clip):
            opt.step()
        else:
            model.skipped += 1
        if on_step:
            on_step(loss.item(), result)
    with mg.no_grad():
        xs, ys = make(T, 512, np.random.default_rng(seed + 1))
        held_out = model.loss(xs, ys, backend)[0].item()
    return model, held_out
