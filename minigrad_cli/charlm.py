"""The character-level language model: a cell, a linear read-out, truncated BPTT over K-step windows.

Karpathy's "hello" example generalised: each character is one-hot (or
embedded), the cell reads one per step, and the read-out predicts the next.
The text is cut into `batch` parallel streams; training step s reads window
s mod n of every stream, carrying the state from one window to the next with
the gradient cut (truncated BPTT, k1 = k2 = seq_len) and resetting it when
the streams start over — so the data a step sees depends on s alone, and a
resumed run continues exactly.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
import rnn
from minigrad.clip import clip_and_check
from minigrad.nn import Embedding, Linear, Module
from rnn.kernels.ir import KernelError, UnsupportedCellError
from rnn.rolled import as_tuple, detach_state

from .errors import UsageError
from .text import chars_needed

CELLS = {"elman": rnn.ElmanCell, "lstm": rnn.LSTMCell, "gru": rnn.GRUCell}


class CharModel(Module):
    def __init__(self, vocab_size, cell="lstm", hidden=64, embed=0, seed=0):
        rng = np.random.default_rng(seed)
        self.vocab_size, self.cell_name, self.embed_dim = vocab_size, cell, embed
        self.embed = Embedding(vocab_size, embed, rng=rng) if embed else None
        self.cell = CELLS[cell](embed or vocab_size, hidden, rng=rng)
        self.head = Linear(hidden, vocab_size, rng=rng)

    def inputs(self, ids):
        """(T, B) character ids -> (T, B, input_size) cell inputs."""
        if self.embed is not None:
            return self.embed(ids)
        ids = np.asarray(ids)
        rows = np.zeros(ids.shape + (self.vocab_size,))  # np.eye(V)[ids] without making the V x V identity each step
        rows[(*np.indices(ids.shape, sparse=True), ids)] = 1.0
        return mg.Tensor(rows)

    def logits(self, outputs):
        T, B, H = outputs.shape
        return self.head(outputs.reshape(T * B, H))

    def forward(self, ids, state=None, backend="auto"):
        """Logits (T*B, V) for ids (T, B), and the run (its final state and unfolded graph)."""
        result = rnn.run(self.cell, self.inputs(ids), state, backend=backend)
        return self.logits(result.outputs), result

    def loss(self, ids, targets, state=None, backend="auto"):
        """The mean cross-entropy of predicting `targets` (T, B) from ids (T, B), and the run: the read-out
        and the loss as one op (mg.linear_cross_entropy) — a training step needs no logits."""
        result = rnn.run(self.cell, self.inputs(ids), state, backend=backend)
        T, B, H = result.outputs.shape
        return mg.linear_cross_entropy(result.outputs.reshape(T * B, H), self.head.weight, self.head.bias,
                                       np.asarray(targets).reshape(-1)), result


def streams(ids, batch, seq_len):
    """Cut the text into `batch` equal streams (fewer when the text is short), each long enough for one window.

    A window is seq_len inputs and the seq_len characters after them, so a
    stream needs chars_needed(seq_len) = seq_len + 1 characters.
    """
    batch = max(1, min(batch, (len(ids) - 1) // (seq_len + 1)))
    length = len(ids) // batch
    return ids[: batch * length].reshape(batch, length)


class Trainer:
    """Truncated BPTT over windows; everything needed to resume lives in `meta()`."""

    def __init__(self, model, optimizer, ids, seq_len, batch, clip=None, backend="auto", whole_step=True):
        self.model, self.opt, self.seq_len, self.clip, self.backend = model, optimizer, seq_len, clip, backend
        if len(ids) < chars_needed(seq_len):
            raise UsageError(f"text has {len(ids)} characters; --seq-len {seq_len} needs "
                             f"{chars_needed(seq_len)} (--seq-len + 1)")
        self.data = streams(ids, batch, seq_len)
        self.windows = (self.data.shape[1] - 1) // seq_len
        self.step, self.losses, self.state, self.skipped = 0, [], None, 0
        self.backend_used = None
        self.params = model.parameters()  # the optimizer's, fixed as its are: not looked up again each step
        # the step compiled whole (see compiled()); False: not tried yet
        self._compiled = False if whole_step and backend != "graph" else None
        self.why_not_compiled = (None if self._compiled is False else
                                 "the graph backend was asked for" if backend == "graph" else "whole_step=False")

    def window(self, step):
        pos = (step % self.windows) * self.seq_len
        chunk = self.data[:, pos: pos + self.seq_len + 1].T  # (K+1, B)
        return chunk[:-1], chunk[1:]

    def train_step(self):
        if self.step % self.windows == 0:
            self.state = None  # the streams start over: so does the memory
        inputs, targets = self.window(self.step)
        value = self.compiled_step(inputs, targets)
        if value is None:
            value = self.engine_step(inputs, targets)
        self.step += 1
        self.losses.append(value)
        return value

    def compiled(self):
        """The whole training step compiled (rnn.kernels.training.TrainStep), or None where it cannot
        be: the graph backend, a cell or optimizer it does not cover, no Numba
        (why_not_compiled says which); the engine step then runs."""
        if self._compiled is False:
            self._compiled = None
            try:
                from rnn.kernels.training import TrainStep
                m = self.model
                step = TrainStep(m.cell, m.head.weight, m.head.bias, self.opt, self.clip,
                                 embedding=None if m.embed is None else m.embed.weight)
                self._compiled = _verified(step, self.data.shape[0], self.seq_len)
            except (ImportError, UnsupportedCellError, KernelError) as e:
                self.why_not_compiled = str(e) or type(e).__name__
        return self._compiled

    def compiled_step(self, inputs, targets):
        """The step compiled whole: its loss, or None (nothing done) where it cannot run."""
        compiled = self.compiled()
        if compiled is None:
            return None
        try:
            value, state, updated = compiled(inputs, targets, self.state)
        except UnsupportedCellError as e:  # e.g. a parameter's array replaced by one of another shape
            self._compiled, self.why_not_compiled = None, str(e)
            return None
        self.state = tuple(mg.Tensor(s) for s in state)
        self.skipped += not updated
        self.backend_used = "numba, whole step"
        return value

    def engine_step(self, inputs, targets):
        """One step through the engine: rnn.run, the read-out's loss, backward, clipping, the update."""
        loss, result = self.model.loss(inputs, targets, self.state, backend=self.backend)
        for p in self.params:
            p.grad = None
        loss.backward()
        if self.clip_and_check():
            self.opt.step()
        self.state = as_tuple(detach_state(result.state))
        self.backend_used = result.backend
        return loss.item()

    def clip_and_check(self):
        """Clip as asked; False (skip the update) when the gradient is not finite."""
        if clip_and_check(self.params, self.clip):
            return True
        self.skipped += 1
        return False

    def meta(self):
        return {"step": self.step, "losses": self.losses, "skipped": self.skipped,
                "carry": None if self.state is None else [s.data.tolist() for s in self.state]}

    def restore(self, meta):
        self.step, self.losses, self.skipped = meta["step"], list(meta["losses"]), meta.get("skipped", 0)
        dtype = self.model.cell.dtype
        self.state = None if meta["carry"] is None else tuple(mg.Tensor(np.array(s, dtype=dtype))
                                                               for s in meta["carry"])


def _verified(step, batch, seq_len):
    """`step` once it has compiled (or loaded) on a window of zeros and a copy of the model, so that a
    failure — a typing error, a damaged cache file — surfaces here, where the trainer can still take
    the engine path; KernelError if not."""
    import copy
    trial = copy.deepcopy(step)  # the model, optimizer and all: the trial step updates nothing of the user's
    try:
        trial(np.zeros((seq_len, batch), np.intp), np.zeros((seq_len, batch), np.intp))
    except UnsupportedCellError:
        raise
    except Exception as e:  # noqa: BLE001 — whatever stops it, the engine step is still right
        first = str(e).splitlines()[0] if str(e) else ""
        raise KernelError(f"the compiled training step does not run here: {type(e).__name__}: {first}") from None
    return step


@mg.no_grad()
def sample(model, vocab, length, temperature=1.0, prime="", seed=0):
    """`length` characters drawn from the model after reading `prime`."""
    if temperature <= 0:
        raise UsageError(f"--temperature must be positive, got {temperature}")
    rng = np.random.default_rng(seed)
    cell = model.cell
    state = cell.initial_state(1)
    for i in vocab.encode(prime):
        state = cell.step(model.inputs(np.array([[i]]))[0], state)
    out = []
    for _ in range(length):
        logits = model.head(cell.output(state)).data[0]
        with np.errstate(over="ignore"):  # shifted first: a tiny temperature sends the rest to -inf, never NaN
            p = np.exp((logits - logits.max()) / temperature)
        i = int(rng.choice(len(p), p=p / p.sum()))
        out.append(i)
        state = cell.step(model.inputs(np.array([[i]]))[0], state)
    return prime + vocab.decode(out)
