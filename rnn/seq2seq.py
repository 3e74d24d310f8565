"""Encoder–decoder sequence-to-sequence nets (Goodfellow et al. §10.4, Fig. 10.12), with attention
(Bahdanau et al. 2015, "additive"; Luong et al. 2015, "dot").

``Seq2Seq(encoder, decoder, n_out, context="initial", attention="additive", pad=0, bos=1, eos=None)``

The encoder is any cell reading one-hot source tokens (its input_size is the source vocabulary); its
final state is the context C.  The decoder is any cell; Seq2Seq makes it a network step that reads
y(t−1) — the previous target when training (teacher forcing), its own previous argmax or sample
when decoding — emits o(t) = V h(t) + c over the `n_out` target tokens, and is conditioned on C in
one of the ways of §10.4, by `context`:

    "initial"    C is the decoder's initial state
    "input"      C is read at every step, beside y(t−1)        (the decoder reads n_out + |C| inputs)
    "both"       both
    "attention"  at every step, beside y(t−1), the average of all encoder outputs e(s) weighted by
                 α(t, s) = softmax_s(score(h(t−1), e(s))), score = h·e(s) ("dot") or
                 vᵀ tanh(W_a h + U_a e(s)) ("additive"); the decoder starts from C as well

Roughly this Python loop, for one teacher-forced batch::

    E, C = run(encoder, onehot(src))           # the encoder's outputs (S, B, H) and final state
    h, y_prev, L = C, onehot(bos), 0
    for t in range(T):
        c = attend(h, E) if attention else C
        h = decoder.step(concat(y_prev, c), h)  # (just y_prev for context="initial")
        o = V h + c_o
        L += Σ_b [y(t, b) ≠ pad] · −log softmax(o)[y(t, b)]
        y_prev = onehot(y(t))
    return L / (number of target tokens that are not pad)      # reduction="mean"; "sum": L

Both chains are rnn.run's: each one rolled graph, unfolded, drawn, differentiated as usual
(viz.draw_seq2seq draws them as one picture joined by C).  Sequences of different lengths share a
batch padded with `pad` at the end: the encoder then runs as `Masked(encoder)`, holding its state
past each sequence's end, so C is each one's state after its last token, and padded source
positions get no attention; padded target positions add nothing to the loss or its gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg
from minigrad import Tensor
from minigrad.errors import ShapeError
from minigrad.nn import Module, Parameter

from .cell import Cell
from .rolled import as_tuple
from .run import run
from .stacked import _symbols
from .unfold import choice_seed

CONTEXTS = ("initial", "input", "both", "attention")
ATTENTIONS = ("additive", "dot")
DECODING = ("greedy", "sample")
_NO_ATTENTION = -1e9   # added to a padded position's score: exp() of it is exactly 0


class Masked(Cell):
    """`cell`, holding its state where a sequence has ended: with m = [t < length],

        state(t) = m · cell.step(x(t), state(t−1)) + (1 − m) · state(t−1)

    The lengths, (B, 1), are the run's context: ``rnn.run(Masked(cell), xs, context=lengths)``.  For a
    chain run backward in time (a Bidirectional cell) the state stays its initial one over the padding,
    so that chain starts at each sequence's own last step."""

    def __init__(self, cell):
        if not isinstance(cell, Cell):
            raise TypeError(f"Masked: needs an rnn cell, got {type(cell).__name__}")
        if cell.reads():
            raise TypeError(f"Masked: {type(cell).__name__} reads {', '.join(sorted(cell.reads()))}; "
                            "a masked cell reads x(t) and its state only (its context is the lengths)")
        super().__init__(cell.input_size, cell.hidden_size, cell.dtype)
        self.cell = cell
        self.state_names = tuple(cell.state_names)
        if getattr(cell, "delays", None):
            self.delays = dict(cell.delays)

    @property
    def emits(self):
        return self.cell.emits

    @property
    def display_name(self):   # what pictures call it
        return f"{getattr(self.cell, 'display_name', None) or type(self.cell).__name__}, masked"

    @property
    def symbols(self):
        return {f"cell.{n}": s for n, s in _symbols(self.cell).items()}

    def initial_state(self, batch):
        return self.cell.initial_state(batch)

    def step(self, x, state, t, context):
        m = mg.less(t, context)                       # (B, 1): 1 while the sequence lasts, then 0
        new, old = as_tuple(self.cell.step(x, state)), as_tuple(state)
        out = tuple(m * n + (1 - m) * o for n, o in zip(new, old))
        return out if len(out) > 1 else out[0]

    def output(self, state):
        return self.cell.output(state)

    def __repr__(self):
        return f"Masked({self.cell!r})"


class DecoderStep(Cell):
    """The decoder as a network step (see the module): reads y(t−1), emits o(t) over the target
    tokens, scores it against y(t) with padding left out.  Context and attention are subclasses."""

    def __init__(self, decoder, n_out, pad, rng, extra=0):
        if decoder.reads():
            raise TypeError(f"Seq2Seq: the decoder {type(decoder).__name__} reads "
                            f"{', '.join(sorted(decoder.reads()))}; Seq2Seq feeds it y(t−1) and the context itself")
        if decoder.input_size != n_out + extra:
            what = f"n_out = {n_out}" + (f" plus the context's {extra}" if extra else "")
            raise ValueError(f"Seq2Seq: the decoder reads input_size={decoder.input_size}, but each step feeds "
                             f"it the one-hot of y(t−1) ({what}): make it {type(decoder).__name__}"
                             f"({n_out + extra}, ...)")
        super().__init__(0, decoder.hidden_size, decoder.dtype)
        self.decoder = decoder
        self.state_names = tuple(decoder.state_names)
        self.gates = getattr(decoder, "gates", None)   # for the parameter table's note
        self.output_size = int(n_out)
        width, dtype = decoder.emits, decoder.dtype
        bound = 1 / np.sqrt(width)
        self.V = Parameter(rng.uniform(-bound, bound, (n_out, width)).astype(dtype))
        self.c = Parameter(np.zeros(n_out, dtype))
        self._keep = np.ones(n_out, dtype)
        self._keep[pad] = 0

    @property
    def symbols(self):
        return {**{f"decoder.{n}": s for n, s in _symbols(self.decoder).items()}, "V": "V", "c": "c"}

    @property
    def display_name(self):
        return getattr(self.decoder, "display_name", None) or type(self.decoder).__name__

    def initial_state(self, batch):
        return self.decoder.initial_state(batch)

    def step(self, x, state, y_prev):
        return self.decoder.step(y_prev, state)

    def output(self, state):
        return self.decoder.output(state) @ self.V.T + self.c

    def loss(self, o, y):
        # log p(y(t)) per sequence, its pad column zeroed first so that a padded target picks 0 (and passes
        # no gradient): a mask made from y alone would be a constant of the trace, y being no input of an op
        return -mg.pick(mg.log_softmax(o, axis=-1) * Tensor(self._keep), y).sum()


class ContextDecoderStep(DecoderStep):
    """C read at every step beside y(t−1) (context="input" or "both")."""

    def step(self, x, state, y_prev, context):
        return self.decoder.step(mg.concatenate([y_prev, context], axis=-1), state)


class AttentionDecoderStep(DecoderStep):
    """y(t−1) and the attention-weighted encoder outputs at every step; the context is (E, bias):
    E the encoder outputs (S, B, H), bias (S, B) 0 at real positions and −1e9 at padding."""

    def __init__(self, decoder, n_out, pad, rng, width, score):
        super().__init__(decoder, n_out, pad, rng, extra=width)
        self.score = score
        H = decoder.emits
        if score == "dot" and H != width:
            raise ValueError(f"Seq2Seq: dot-product attention scores h(t−1)·e(s), so the decoder's state "
                             f"({H}) and the encoder's outputs ({width}) must have one width; use "
                             "attention='additive'")
        if score == "additive":
            bound = 1 / np.sqrt(H)
            self.Wa = Parameter(rng.uniform(-bound, bound, (H, H)).astype(decoder.dtype))
            self.Ua = Parameter(rng.uniform(-bound, bound, (H, width)).astype(decoder.dtype))
            self.v = Parameter(rng.uniform(-bound, bound, H).astype(decoder.dtype))

    @property
    def symbols(self):
        return {**super().symbols, "Wa": "Wa", "Ua": "Ua", "v": "v"}

    def step(self, x, state, y_prev, context):
        E, bias = context
        q = self.decoder.output(state)                                     # the query: h(t−1)
        with mg.scope("attention"):
            if self.score == "dot":
                scores = (E * q).sum(axis=-1)                                  # (S, B)
            else:
                scores = ((q @ self.Wa.T + E @ self.Ua.T).tanh() * self.v).sum(axis=-1)
            a = mg.softmax(scores + bias, axis=0).named("α")               # over source positions
            c = (a.reshape(*a.shape, 1) * E).sum(axis=0).named("c(t)")    # (B, H)
        return self.decoder.step(mg.concatenate([y_prev, c], axis=-1), state)


@dataclass
class Seq2SeqResult:
    encoder: object          # the encoder's rnn.RunResult: outputs E (S, B, H), final state C
    decoder: object          # the decoder's rnn.RunResult: o(t) (T, B, n_out), L(t)
    context: object          # C: the encoder's final state (a tensor or a tuple)
    loss: Tensor | None = None   # what to call backward() on
    tokens: int = 0          # the target tokens the loss counts (padding left out)
    mode: str = "initial"    # how the decoder is conditioned: see Seq2Seq's `context`

    @property
    def attends(self):
        return self.mode == "attention"


@dataclass
class Decoded:
    tokens: np.ndarray                 # (T, B) chosen tokens, `pad` after each sequence's eos
    alignments: np.ndarray | None      # (T, B, S): α(t, s), for an attention model
    result: Seq2SeqResult


class Seq2Seq(Module):
    def __init__(self, encoder, decoder, n_out, context="initial", attention="additive", pad=0, bos=1,
                 eos=None, rng=None):
        if not isinstance(encoder, Cell) or not isinstance(decoder, Cell):
            raise TypeError(f"Seq2Seq: encoder and decoder must be rnn cells, got {type(encoder).__name__} "
                            f"and {type(decoder).__name__}")
        if context not in CONTEXTS:
            raise ValueError(f"Seq2Seq: context must be one of {CONTEXTS}, got {context!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"Seq2Seq: attention must be one of {ATTENTIONS}, got {attention!r}")
        if encoder.reads():
            raise TypeError(f"Seq2Seq: the encoder {type(encoder).__name__} reads "
                            f"{', '.join(sorted(encoder.reads()))}; it reads source tokens and its state only")
        n_out = int(n_out)
        for name, tok in (("pad", pad), ("bos", bos), ("eos", eos)):
            if tok is not None and not 0 <= int(tok) < n_out:
                raise ValueError(f"Seq2Seq: {name}={tok} is not a target token (0 .. {n_out - 1})")
        rng = rng if rng is not None else np.random.default_rng()
        self.encoder, self.n_out, self.context_mode = encoder, n_out, context
        self.pad, self.bos, self.eos = int(pad), int(bos), (None if eos is None else int(eos))
        width = as_tuple(encoder.initial_state(1))[0].shape[-1]
        if context == "attention":
            self.step = AttentionDecoderStep(decoder, n_out, self.pad, rng, encoder.emits, attention)
        elif context == "initial":
            self.step = DecoderStep(decoder, n_out, self.pad, rng)
        else:
            self.step = ContextDecoderStep(decoder, n_out, self.pad, rng, extra=width)
        if context != "input":
            self._initial(as_tuple(encoder.initial_state(1)))   # C must fit the decoder's state: check now

    @property
    def attends(self):
        return self.context_mode == "attention"

    def _initial(self, C):
        """C as the decoder's initial state: all of it when the shapes agree, else its first tensor
        (an LSTM encoder's h into a GRU decoder, a Bidirectional encoder's forward h)."""
        want = as_tuple(self.step.initial_state(C[0].shape[0]))
        if [c.shape for c in C] == [w.shape for w in want]:
            return C if len(C) > 1 else C[0]
        if len(want) == 1 and C[0].shape == want[0].shape:
            return C[0]
        raise ShapeError(f"Seq2Seq: the encoder's final state {[c.shape[1:] for c in C]} cannot start the "
                         f"decoder, whose state is {[w.shape[1:] for w in want]}; give them one hidden size, "
                         "or use context='input'")

    # --- the source side ------------------------------------------------------------------------
    def _tokens(self, tokens, what, vocab):
        arr = np.asarray(tokens._data if isinstance(tokens, Tensor) else tokens)
        if arr.ndim != 2 or arr.dtype.kind not in "iu":
            raise ShapeError(f"Seq2Seq: {what} must be integer tokens of shape (length, batch), "
                             f"got {arr.dtype} of shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= vocab):
            raise ValueError(f"Seq2Seq: {what} tokens must lie in [0, {vocab}), got values in "
                             f"[{arr.min()}, {arr.max()}]")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ShapeError(f"Seq2Seq: {what} of shape {arr.shape} is empty")
        return arr

    def lengths(self, src):
        """Each source sequence's length: its tokens before the padding at its end."""
        real = src != self.pad
        n = real.sum(axis=0)
        if np.any(real[np.arange(len(src))[:, None] >= n[None, :]]) or np.any(n == 0):
            raise ValueError(f"Seq2Seq: each source sequence must be its tokens followed only by padding "
                             f"({self.pad}), and hold at least one token")
        return n

    def encode(self, src):
        """The encoder's rnn.RunResult over source tokens (S, B), padded at the end with `pad`."""
        src = self._tokens(src, "src", self.encoder.input_size)
        xs = np.eye(self.encoder.input_size, dtype=self.encoder.dtype)[src]
        n = self.lengths(src)
        if np.all(n == len(src)):
            return run(self.encoder, xs), n
        lengths = n.reshape(-1, 1).astype(self.encoder.dtype)
        return run(Masked(self.encoder), xs, context=lengths), n

    def _conditioning(self, enc, n):
        C = as_tuple(enc.state)
        kw = {}
        if self.context_mode != "input":
            kw["state0"] = self._initial(C)
        if self.context_mode in ("input", "both"):
            kw["context"] = C[0]
        elif self.attends:
            S, B = enc.outputs.shape[:2]
            bias = np.where(np.arange(S)[:, None] < n[None, :], 0.0, _NO_ATTENTION).astype(self.encoder.dtype)
            kw["context"] = (enc.outputs, Tensor(bias))
        return kw

    def _y0(self, B):
        return np.eye(self.n_out, dtype=self.step.dtype)[np.full(B, self.bos)]

    # --- training and decoding ------------------------------------------------------------------
    def __call__(self, src, tgt, reduction="mean"):
        return self.forward(src, tgt, reduction)

    def forward(self, src, tgt, reduction="mean"):
        """The teacher-forced loss of target tokens `tgt` (T, B) given `src` (S, B), both padded at the
        end with `pad`: reduction "mean" per target token, or "sum"."""
        if reduction not in ("mean", "sum"):
            raise ValueError(f"Seq2Seq: reduction must be 'mean' or 'sum', got {reduction!r}")
        tgt = self._tokens(tgt, "tgt", self.n_out)
        enc, n = self.encode(src)
        if tgt.shape[1] != len(n):
            raise ShapeError(f"Seq2Seq: src holds {len(n)} sequences and tgt {tgt.shape[1]}; "
                             "both are (length, batch)")
        T, B = tgt.shape
        dec = run(self.step, None, steps=T, batch=B, targets=tgt, feed="teacher", y0=self._y0(B),
                  reduction="sum", **self._conditioning(enc, n))
        tokens = int(np.sum(tgt != self.pad))
        loss = dec.loss / max(tokens, 1) if reduction == "mean" else dec.loss
        return Seq2SeqResult(enc, dec, enc.state, loss, tokens, self.context_mode)

    def decode(self, src, steps, how="greedy", seed=0):
        """Free-running decoding of `steps` tokens per source sequence: each step reads the one-hot of
        the previous step's argmax ("greedy") or of a token drawn from its softmax ("sample")."""
        if how not in DECODING:
            raise ValueError(f"Seq2Seq.decode: how must be one of {DECODING}, got {how!r}")
        if not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"Seq2Seq.decode: steps must be a positive integer, got {steps!r}")
        with mg.no_grad():
            enc, n = self.encode(src)
            B = len(n)
            dec = run(self.step, None, steps=int(steps), batch=B, y0=self._y0(B),
                      feed="argmax" if how == "greedy" else "sample", seed=seed,
                      backend="graph" if self.attends else "auto", **self._conditioning(enc, n))
            # the token chosen at step t is what step t + 1 was fed; the last step's, chosen the same way
            o = dec.outputs[-1]
            last = mg.argmax_onehot(o) if how == "greedy" else mg.sample_onehot(o, choice_seed(seed, int(steps)))
        tokens = np.argmax(np.concatenate([dec.fed.data[1:], last.data[None]]), axis=-1)
        if self.eos is not None:
            ended = np.cumsum(tokens == self.eos, axis=0) - (tokens == self.eos) > 0   # after the first eos
            tokens = np.where(ended, self.pad, tokens)
        alignments = None
        if self.attends:
            g = dec.graph
            alpha = next(nid for nid, node in g.rolled.nodes.items() if node.name == "α")
            alignments = np.stack([g.tensors[g.node_at(alpha, t)].data for t in range(int(steps))])
            alignments = np.swapaxes(alignments, 1, 2)                                # (T, B, S)
        return Decoded(tokens, alignments, Seq2SeqResult(enc, dec, enc.state, None, 0, self.context_mode))

    def __repr__(self):
        return (f"Seq2Seq({self.encoder!r}, {self.step.decoder!r}, n_out={self.n_out}, "
                f"context={self.context_mode!r})")
