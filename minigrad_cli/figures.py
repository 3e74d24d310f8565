"""`minigrad figures`: the figure gallery — chapter 10 of Goodfellow, Bengio & Courville, *Deep
Learning*, drawn from models that run.

Every picture is drawn from a real model built with this project's API and run on a little data
(the attention model is trained, because its picture is what it learnt); every caption names the
book's figure and the equation the model computes, and a number a caption states is measured in
this run.  One builder per picture, registered under its figure with `@picture(figure, stem)`;
a builder takes the run's `Lab` (the models two pictures share) and returns (digraph, caption).
`run_figures(out)` renders each to `<stem>.svg` (its DOT source `<stem>.gv` beside it) and writes
`index.html`, the figures in the book's order.

Everything is seeded, so one run writes the same DOT as the next.  The runs use the explicit graph
backend: these nets are a few steps long, and the graph needs no compiled kernel, so the gallery
takes seconds on a fresh machine too — but for the encoder of Fig. 10.12's one pair, which
rnn.Seq2Seq runs with backend "auto" (a kernel compiled once, then cached).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

import minigrad as mg
import rnn
import viz
from minigrad.nn import Parameter

from .pages import write_page
from .tasks import REVERSAL_SPECIALS, reversal

# (figure key, the heading it stands under), in the order of the book's chapter 10.
FIGURES = [
    ("10.2", "Figure 10.2 — unfolding a recurrent network"),
    ("10.3", "Figure 10.3 — the recurrent network with an output and a loss at every step"),
    ("10.4", "Figure 10.4 — recurrence through the output only"),
    ("10.5", "Figure 10.5 — one output, at the end of the sequence"),
    ("10.6", "Figure 10.6 — teacher forcing"),
    ("10.9", "Figure 10.9 — from a fixed-size vector to a sequence"),
    ("10.10", "Figure 10.10 — the conditional recurrent network"),
    ("10.11", "Figure 10.11 — the bidirectional recurrent network"),
    ("10.12", "Figure 10.12 — the encoder–decoder, and attention"),
    ("10.13", "Figure 10.13 — three ways of making a recurrent network deep"),
    ("10.14", "Figure 10.14 — the recursive network"),
    ("10.7", "§10.7 — the challenge of long-term dependencies, measured"),
    ("10.8", "§10.8 — the echo state network"),
    ("10.16", "Figure 10.16 — the long short-term memory cell"),
    ("10.10.2", "§10.10.2 — the gated recurrent unit"),
]
TITLE = "Chapter 10 of Deep Learning, drawn from running models"
INTRO = ("One picture per figure of Goodfellow, Bengio & Courville, Deep Learning, chapter 10 "
         "(“Sequence Modeling: Recurrent and Recursive Nets”), each drawn from a model built with "
         "minigrad's rnn package and run on a little data. Black squares are delays, the steps they "
         "span written beside them; weights are the letters on the edges they act on, each listed once "
         "in the table beside its picture; a click on a picture opens it at full size. Written by the "
         "command minigrad figures.")


@dataclass(frozen=True)
class Picture:
    figure: str                      # a key of FIGURES
    stem: str                        # the file name without its suffix
    build: Callable                  # Lab -> (graphviz.Digraph, caption)


PICTURES: list[Picture] = []


def picture(figure, stem):
    """Register the decorated builder as the picture `stem` of `figure`."""
    def register(build):
        PICTURES.append(Picture(figure, stem, build))
        return build
    return register


def rolled_and_unrolled(figure, stem, run, rolled_caption, unrolled_caption):
    """Register `figure`'s rolled picture `<stem>-rolled` and its unrolled one `<stem>-unrolled`, both drawn
    from the rnn.RunResult that run() returns (draw_rolled takes one too); the captions are functions of it."""
    def rolled(lab):
        res = run()
        return viz.draw_rolled(res), rolled_caption(res)

    def unrolled(lab):
        res = run()
        return viz.draw_unrolled(res), unrolled_caption(res)
    picture(figure, f"{stem}-rolled")(rolled)
    picture(figure, f"{stem}-unrolled")(unrolled)


def outputs():
    """Every file run_figures writes, known before it runs (the command says which it replaces)."""
    return [p.stem + ext for p in _in_book_order() for ext in (".svg", ".gv")] + ["index.html"]


def _in_book_order():
    rank = {key: i for i, (key, _) in enumerate(FIGURES)}
    return sorted(PICTURES, key=lambda p: rank[p.figure])   # stable: a figure's pictures keep their order


def run_figures(out):
    """Build, render and index every picture in `out` (an existing, writable folder)."""
    lab = Lab()
    headings = dict(FIGURES)
    written = []
    for p in _in_book_order():
        digraph, caption = p.build(lab)
        viz.render(digraph, out / f"{p.stem}.svg")
        written.append((headings[p.figure], f"{p.stem}.svg", caption))
        print(out / f"{p.stem}.svg")
    write_page(out, TITLE, INTRO, written)
    print(out / "index.html")
    return 0


class Lab:
    """What several pictures share — a trained model, one colour scale — made once per run, when first asked for."""

    @cached_property
    def reversal(self):
        return train_reversal()

    @cached_property
    def flows(self):
        """{name: (RunResult after backward, ‖∂L/∂h(1)‖ / ‖∂L/∂h(T)‖)} for a tanh RNN and an LSTM."""
        cells = {"tanh RNN": rnn.ElmanCell(1, FLOW_H, rng=rng(20)), "LSTM": rnn.LSTMCell(1, FLOW_H, rng=rng(20))}
        return {name: gradient_run(cell) for name, cell in cells.items()}

    @cached_property
    def flow_scale(self):
        """(low, high): one colour scale for both pictures, so that equal colours mean equal norms."""
        norms = [n for res, _ in self.flows.values() for n in h_grad_norms(res) if n > 0]
        return min(norms), max(norms)


def rng(seed):
    return np.random.default_rng(seed)


def graph_run(cell, xs, **kw):
    """rnn.run on the explicit graph: what is drawn is the graph that ran (see the module)."""
    return rnn.run(cell, xs, backend="graph", **kw)


# --- the networks of §10.2, written as the book writes them -----------------------------------------

def weights(module, rng, **shapes):
    """module.<name> = a Parameter of each shape, N(0, 0.5²): the book's letters as attribute names, so the
    pictures label the edges with them.  The values are whatever a random start gives: no picture here
    depends on them."""
    for name, shape in shapes.items():
        setattr(module, name, Parameter(rng.normal(0, 0.5, shape)))


class Network(rnn.Cell):
    """What the networks of §10.2 share: o(t) = c + V h(t), L(t) = −log softmax(o(t))[y(t)] (eqs. 10.10–10.14).

    A subclass writes the step and names its weight matrices and their shapes; b, V and c are made here."""

    def __init__(self, n_in, n_hidden, n_out, rng, **shapes):
        super().__init__(n_in, n_hidden)
        self.output_size = n_out
        weights(self, rng, **shapes, V=(n_out, n_hidden))
        self.b, self.c = Parameter(np.zeros(n_hidden)), Parameter(np.zeros(n_out))

    def output(self, h):
        return h @ self.V.T + self.c

    def loss(self, o, y):
        return mg.cross_entropy(o, y)


class Elman(Network):
    """a(t) = b + W h(t−1) + U x(t),  h(t) = tanh(a(t))  (eqs. 10.8–10.9), with Network's o and L."""

    def __init__(self, n_in, n_hidden, n_out, rng):
        super().__init__(n_in, n_hidden, n_out, rng, U=(n_hidden, n_in), W=(n_hidden, n_hidden))

    def step(self, x, h):
        return (self.b + h @ self.W.T + x @ self.U.T).tanh()


class FromVector(Network):
    """Fig. 10.9: h(t) = tanh(b + W h(t−1) + U y(t−1) + R x), the one vector x read at every step."""

    def __init__(self, n_vec, n_hidden, n_out, rng):
        super().__init__(0, n_hidden, n_out, rng, W=(n_hidden, n_hidden), U=(n_hidden, n_out), R=(n_hidden, n_vec))

    def step(self, x, h, y_prev, context):
        return (self.b + h @ self.W.T + y_prev @ self.U.T + context @ self.R.T).tanh()


class Conditional(Network):
    """Fig. 10.10: h(t) = tanh(b + W h(t−1) + U x(t) + R y(t−1)), x(t) a sequence as long as y's."""

    def __init__(self, n_in, n_hidden, n_out, rng):
        super().__init__(n_in, n_hidden, n_out, rng, U=(n_hidden, n_in), W=(n_hidden, n_hidden), R=(n_hidden, n_out))

    def step(self, x, h, y_prev):
        return (self.b + h @ self.W.T + x @ self.U.T + y_prev @ self.R.T).tanh()


class BookBidirectional(rnn.Bidirectional):
    """rnn.Bidirectional with the book's names for its chains: h(t) forward, g(t) backward (Fig. 10.11)."""
    display_name = "Bidirectional"

    def __init__(self, forward, backward):
        super().__init__(forward, backward)
        # Bidirectional names its states h_f, h_b and keys their delays by those names: rename both together
        self.state_names, self.delays = ("h", "g"), {"h": 1, "g": -1}


class DeepTransition(rnn.Cell):
    """Fig. 10.13b (and c with `skip`): a layer z between h(t−1) and h(t), and one between h(t) and o(t):

        z(t) = tanh(b1 + W1 h(t−1) + U x(t)),   h(t) = tanh(b2 + W2 z(t) [+ W h(t−1)]),
        o(t) = c + V tanh(d + P h(t))."""

    def __init__(self, n_in, n_hidden, n_out, rng, skip=False):
        super().__init__(n_in, n_hidden)
        H = n_hidden
        self.output_size = n_out
        skips = {"W": (H, H)} if skip else {}
        weights(self, rng, U=(H, n_in), W1=(H, H), W2=(H, H), P=(H, H), V=(n_out, H), **skips)
        self.b1, self.b2, self.d, self.c = (Parameter(np.zeros(n)) for n in (H, H, H, n_out))

    def step(self, x, h):
        z = (self.b1 + h @ self.W1.T + x @ self.U.T).tanh().named("z")
        a = self.b2 + z @ self.W2.T
        if hasattr(self, "W"):    # the skip connection: h(t−1) reaches h(t) through one layer again
            a = a + h @ self.W.T
        return a.tanh()

    def output(self, h):
        return (self.d + h @ self.P.T).tanh().named("p") @ self.V.T + self.c


def on_random_data(net, r, T, B=2, **kw):
    """rnn.run of one of the networks above over B random sequences of T steps (none for a net without
    inputs: then x(t) is None), with random class targets; `kw` as for rnn.run."""
    xs = r.normal(size=(T, B, net.input_size)) if net.input_size else None
    size = {} if net.input_size else {"steps": T, "batch": B}
    return graph_run(net, xs, targets=r.integers(0, net.output_size, size=(T, B)), **size, **kw)


# --- the pictures --------------------------------------------------------------------------------

def elman_run():
    r = rng(2)
    return graph_run(rnn.ElmanCell(3, 4, rng=r), r.normal(size=(4, 2, 3)))


rolled_and_unrolled(
    "10.2", "fig10-02", elman_run,
    lambda res: "Fig. 10.2, left: the Elman cell rnn.ElmanCell, h(t) = f(h(t−1), x(t); θ) (eq. 10.5) with "
                "f = tanh(b + W h(t−1) + U x(t)) (eqs. 10.8–10.9). The loop closes through the black square, "
                "a delay of one step.",
    lambda res: f"Fig. 10.2, right: the same cell unfolded over the {len(res.states)} steps it ran (rnn.run), "
                "one copy of the step per time step, every copy sharing U, W and b.")


def network_run():
    """Fig. 10.3's network on 2 random sequences of 3 steps, backward done."""
    r = rng(4)
    res = on_random_data(Elman(3, 4, 5, r), r, T=3)
    res.loss.backward()
    return res


rolled_and_unrolled(
    "10.3", "fig10-03", network_run,
    lambda res: "Fig. 10.3, left: the whole network as one rolled graph — a(t) = b + W h(t−1) + U x(t), "
                "h(t) = tanh(a(t)), o(t) = c + V h(t), ŷ(t) = softmax(o(t)) (eqs. 10.8–10.11) — with the "
                "loss L(t) = −log ŷ(t)[y(t)] against the target y(t).",
    lambda res: f"Fig. 10.3, right: unfolded over {len(res.states)} steps, a loss at every one; L = Σ_t L(t) "
                f"(eqs. 10.12–10.14) is {res.loss.item():.3f} on this batch of {res.outputs.shape[1]} random "
                "sequences, and BPTT is res.loss.backward() on this graph (eqs. 10.17–10.28).")


def output_recurrence_run():
    """Fig. 10.4's net trained without teacher forcing: its own o(t−1) fed back, a loss at every step."""
    r = rng(5)
    cell = rnn.OutputRecurrentCell(3, 4, 2, rng=r)
    return graph_run(cell, r.normal(size=(3, 2, 3)), targets=r.normal(size=(3, 2, 2)), feed="output")


rolled_and_unrolled(
    "10.4", "fig10-04", output_recurrence_run,
    lambda res: "Fig. 10.4, left: rnn.OutputRecurrentCell, whose only recurrence runs from the output o(t−1) "
                "back to the hidden units: h(t) = tanh(b + W o(t−1) + U x(t)), o(t) = c + V h(t) — eq. 10.8 "
                "with o(t−1) in place of h(t−1). The delay now sits on the edge out of o.",
    lambda res: f"Fig. 10.4, right: unfolded over {len(res.states)} steps. Everything step t+1 knows of the "
                "past passes through o(t), which the loss trains to match y(t): a narrower channel than h(t) "
                "in Fig. 10.3.")


@picture("10.5", "fig10-05-unrolled")
def many_to_one(lab):
    r = rng(6)
    res = on_random_data(Elman(3, 4, 2, r), r, T=4, loss_steps=[-1])
    return viz.draw_unrolled(res), (
        f"Fig. 10.5: the network of Fig. 10.3 read over {len(res.states)} steps with a loss at the last step only "
        "(rnn.run(..., loss_steps=[-1])): one summary h(τ) of the whole sequence gives one output "
        "o(τ) — many-to-one.")


def _teacher_data():
    r = rng(7)
    cell = rnn.OutputRecurrentCell(3, 4, 2, rng=r)
    return cell, r.normal(size=(3, 2, 3)), r.normal(size=(3, 2, 2))


@picture("10.6", "fig10-06-train")
def teacher_forcing_train(lab):
    cell, xs, ys = _teacher_data()
    res = graph_run(cell, xs, targets=ys, feed="teacher")
    return viz.draw_unrolled(res), (
        "Fig. 10.6, train time: teacher forcing (feed=\"teacher\"). Step t reads the true y(t−1) where "
        "it would read o(t−1), so the log-likelihood splits into one term per step, log p(y(2) | y(1), "
        "x(1), x(2)) + log p(y(1) | x(1), x(2)) (eqs. 10.15–10.16), and the steps train independently.")


@picture("10.6", "fig10-06-test")
def teacher_forcing_test(lab):
    cell, xs, _ = _teacher_data()
    gen = cell.generate(xs, backend="graph")
    return viz.draw_unrolled(gen.result), (
        "Fig. 10.6, test time: the same cell free-running (cell.generate): with no targets to read, "
        "each step is fed the model's own previous output o(t−1).")


@picture("10.9", "fig10-09-unrolled")
def vector_to_sequence(lab):
    r = rng(8)
    res = on_random_data(FromVector(3, 4, 5, r), r, T=4, context=mg.tensor(r.normal(size=(2, 3))))
    return viz.draw_unrolled(res), (
        "Fig. 10.9: vector to sequence (§10.2.4). One vector x and no x(t): rnn.run(net, None, "
        f"steps={len(res.states)}, "
        "context=x) gives x (the node “context”) to every step through R, and each step also reads the "
        "previous target y(t−1) through U: h(t) = tanh(b + W h(t−1) + U y(t−1) + R x).")


@picture("10.10", "fig10-10-unrolled")
def conditional(lab):
    r = rng(9)
    res = on_random_data(Conditional(3, 4, 5, r), r, T=3)
    return viz.draw_unrolled(res), (
        "Fig. 10.10: the conditional RNN — Fig. 10.3 with an edge from the previous target to the state, "
        "h(t) = tanh(b + W h(t−1) + U x(t) + R y(t−1)), so it can model how the y(t) depend on each "
        "other given the sequence x.")


def bidirectional_run():
    r = rng(10)
    net = BookBidirectional(rnn.ElmanCell(2, 3, rng=r), rnn.ElmanCell(2, 3, rng=r))
    return graph_run(net, r.normal(size=(3, 2, 2)))


rolled_and_unrolled(
    "10.11", "fig10-11", bidirectional_run,
    lambda res: "Fig. 10.11, rolled: rnn.Bidirectional of two Elman cells — h(t) = tanh(b→ + W→ h(t−1) + "
                "U→ x(t)) reads the past through a one-step delay, g(t) = tanh(b← + W← g(t+1) + U← x(t)) the "
                "future through a one-step advance (a delay of −1), and o(t) = [h(t); g(t)] reads both.",
    lambda res: f"Fig. 10.11, unrolled over {len(res.states)} steps: the h chain runs left to right from h(0), "
                f"the g chain right to left from g({len(res.states) + 1}), and each o(t) depends on the whole "
                "input sequence, most on the inputs around t.")


# --- §10.4: the encoder–decoder, and a model that learnt to attend -------------------------------

SYMBOLS = 5                                   # reversal over the letters a–e
VOCAB = SYMBOLS + len(REVERSAL_SPECIALS)
REVERSAL_STEPS, REVERSAL_BATCH, REVERSAL_H, REVERSAL_LENGTHS = 100, 16, 12, (3, 4)


def token_names(tokens):
    names = {v: k for k, v in REVERSAL_SPECIALS.items()}
    return [names.get(int(t), chr(ord("a") + int(t) - len(REVERSAL_SPECIALS))) for t in tokens]


def train_reversal():
    """A GRU encoder–decoder with additive attention, trained to reverse a few letters: (model, last loss).

    A few seconds of Adam on the graph backend.  The batches mix lengths, so the encoder runs masked
    (rnn.Masked), which the graph backend runs: nothing waits for a kernel to compile."""
    r = rng(11)
    model = rnn.Seq2Seq(rnn.GRUCell(VOCAB, REVERSAL_H, rng=r), rnn.GRUCell(VOCAB + REVERSAL_H, REVERSAL_H, rng=r),
                        VOCAB, context="attention", attention="additive", rng=r, **REVERSAL_SPECIALS)
    opt = mg.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(REVERSAL_STEPS):
        src, tgt = reversal(REVERSAL_BATCH, r, lengths=REVERSAL_LENGTHS, symbols=SYMBOLS)
        loss = model(src, tgt).loss
        opt.zero_grad()
        loss.backward()
        mg.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return model, loss.item()


ACCURACY_N = 200


def reversal_accuracy(model):
    """Exact-sequence accuracy of greedy decoding on ACCURACY_N random sequences."""
    src, tgt = reversal(ACCURACY_N, rng(12), lengths=REVERSAL_LENGTHS, symbols=SYMBOLS)
    return float(np.mean(np.all(model.decode(src, tgt.shape[0]).tokens == tgt, axis=0)))


def tokens(letters):
    """Token ids of letters a, b, ... (see token_names)."""
    return [ord(c) - ord("a") + len(REVERSAL_SPECIALS) for c in letters.split()]


@picture("10.12", "fig10-12-encoder-decoder")
def encoder_decoder(lab):
    r = rng(13)
    H = 4
    model = rnn.Seq2Seq(rnn.ElmanCell(VOCAB, H, rng=r), rnn.ElmanCell(VOCAB + H, H, rng=r), VOCAB,
                        context="input", rng=r, **REVERSAL_SPECIALS)
    src, tgt = reversal(1, r, lengths=(2, 2), symbols=SYMBOLS)
    xs, ys = (", ".join(f"{v}({t})" for t in range(1, len(seq) + 1)) for v, seq in (("x", src), ("y", tgt)))
    return viz.draw_seq2seq(model(src, tgt)), (
        f"Fig. 10.12: rnn.Seq2Seq of two Elman cells on one pair. The encoder reads {xs}; its final "
        "state is the context C; the decoder reads C at every step (context=\"input\") beside y(t−1), "
        f"teacher-forced, and is trained to maximise log P({ys} | {xs}) (§10.4).")


@picture("10.12", "fig10-12-attention")
def attention(lab):
    model, loss = lab.reversal
    # "a b c d" is the one drawn; "a b c" beside it pads the batch, so the encoder runs masked, on the graph
    # backend (see train_reversal)
    shown, other = tokens("a b c d"), tokens("a b c")
    src = np.array([shown, other + [REVERSAL_SPECIALS["pad"]]]).T
    decoded = model.decode(src, len(shown) + 1)
    source, target = token_names(shown), token_names(decoded.tokens[:, 0])
    return viz.draw_attention((decoded, 0), source=source, target=target), (
        f"Fig. 10.12 with attention (§10.4; Bahdanau et al. 2015): a GRU encoder–decoder trained for "
        f"{REVERSAL_STEPS} Adam steps of {REVERSAL_BATCH} sequences to reverse {'–'.join(map(str, REVERSAL_LENGTHS))} "
        "letters (last loss "
        f"{loss:.3f}; {reversal_accuracy(model):.0%} of {ACCURACY_N} random sequences reversed exactly). Row t is "
        "α(t, s) = softmax_s(vᵀ tanh(W_a h(t−1) + U_a e(s))) as it decodes "
        f"“{' '.join(source)}” into “{' '.join(target)}”: each output looks up the source letter it "
        "copies, so reversal shows as the anti-diagonal.")


# --- §10.5 and §10.6: deep and recursive nets -----------------------------------------------------

@picture("10.13", "fig10-13a-stacked")
def deep_stacked(lab):
    r = rng(14)
    deep = rnn.Stacked([rnn.ElmanCell(3, 4, rng=r), rnn.ElmanCell(4, 4, rng=r)])
    return viz.draw_rolled(deep), (
        "Fig. 10.13a: rnn.Stacked([ElmanCell, ElmanCell]) — the state split into a hierarchy of layers, "
        "h1(t) = tanh(b1 + W1 h1(t−1) + U1 x(t)) and h2(t) = tanh(b2 + W2 h2(t−1) + U2 h1(t)), each with "
        "its own delay.")


@picture("10.13", "fig10-13b-deep-transition")
def deep_transition(lab):
    return viz.draw_rolled(DeepTransition(3, 4, 2, rng(15)), detail="ops"), (
        "Fig. 10.13b: a deeper computation in each part, every op drawn: an MLP layer z(t) = "
        "tanh(b1 + W1 h(t−1) + U x(t)) between h(t−1) and h(t) = tanh(b2 + W2 z(t)), and a layer "
        "p(t) = tanh(d + P h(t)) before o(t) = c + V p(t). The shortest path from h(t−1) to h(t) now "
        "crosses two layers.")


@picture("10.13", "fig10-13c-skip")
def deep_transition_skip(lab):
    return viz.draw_rolled(DeepTransition(3, 4, 2, rng(15), skip=True), detail="ops"), (
        "Fig. 10.13c: the same with a skip connection, h(t) = tanh(b2 + W2 z(t) + W h(t−1)): h(t−1) "
        "reaches h(t) through one layer again, which keeps the paths through time short.")


@picture("10.14", "fig10-14-recursive")
def recursive(lab):
    r = rng(16)
    cell = rnn.RecursiveCell(input_size=3, hidden_size=4, output_size=2, rng=r)
    x = [r.normal(size=3) for _ in range(4)]
    res = rnn.run_tree(cell, rnn.tree(((x[0], x[1]), (x[2], x[3]))), target=1)
    res.loss.backward()
    return viz.draw_tree(res, grad=True), (
        f"Fig. 10.14: rnn.RecursiveCell run over a balanced tree of {len(res.leaves)} inputs (rnn.run_tree): "
        "h = tanh(b + V x) at a leaf, h = tanh(b + U h(left) + W h(right)) at a node, o = c + W_out "
        f"h(root), L = −log softmax(o)[y] = {res.loss.item():.3f}; coloured by ‖∂L/∂h‖ after backward(). "
        f"Every input is {res.depth} nonlinearities below the root, where a chain over the same "
        f"{len(res.leaves)} inputs puts its first {len(res.leaves)} deep: O(log τ) instead of τ (§10.6).")


# --- §10.7, §10.8, §10.10: long-term dependencies ----------------------------------------------------

FLOW_T, FLOW_H = 30, 16


def gradient_run(cell):
    """cell over FLOW_T random steps with L = (w·h(T))², the loss at the last step only; backward done:
    (the RunResult, ‖∂L/∂h(1)‖ / ‖∂L/∂h(T)‖)."""
    r = rng(21)
    res = graph_run(cell, r.normal(size=(FLOW_T, 1, 1)))
    w = mg.tensor(r.normal(size=FLOW_H))
    ((res.outputs[-1] * w).sum() ** 2).backward()
    norms = h_grad_norms(res)
    return res, norms[0] / norms[-1]


def h_grad_norms(res):
    """‖∂L/∂h(t)‖ for t = 1 … T (the first state tensor: h, not an LSTM's c)."""
    firsts = [s[0] if isinstance(s, tuple) else s for s in res.states]
    return [float(np.linalg.norm(h.grad)) if h.grad is not None else 0.0 for h in firsts]


def gradient_picture(name, what):
    """The builder of the picture of Lab.flows[name]; `what` names the cell in its caption."""
    def build(lab):
        res, _ = lab.flows[name]
        ratios = "; ".join(f"{n}: {ratio:.1e}" for n, (_, ratio) in lab.flows.items())
        return viz.draw_unrolled(res, grad=True, collapse=2, scale=lab.flow_scale), (
            f"§10.7, measured: the {what} over {FLOW_T} steps (untrained, {FLOW_H} units) with one loss at the "
            f"last step, L = (w·h({FLOW_T}))², each state coloured by ‖∂L/∂h(t)‖ on one scale for both pictures. "
            f"What reaches h(1) has passed {FLOW_T - 1} Jacobians ∂h(t+1)/∂h(t); ‖∂L/∂h(1)‖ / ‖∂L/∂h({FLOW_T})‖ "
            f"in this run — {ratios}.")
    return build


picture("10.7", "sec10-7-tanh-gradient")(gradient_picture("tanh RNN", "tanh RNN (rnn.ElmanCell)"))
picture("10.7", "sec10-7-lstm-gradient")(
    gradient_picture("LSTM", "LSTM (rnn.LSTMCell, its forget gate's bias starting at 1 as §10.10.1 advises)"))


@picture("10.8", "sec10-8-echo-state")
def echo_state(lab):
    esn = rnn.EchoState(1, 30, output_size=1, spectral_radius=0.9, leak=0.5, rng=rng(17))
    series = np.sin(np.arange(301) * 0.2)[:, None, None]           # (T, B, 1): predict one step ahead
    xs, ys = series[:-1], series[1:]
    states = np.stack([s[0].data for s in graph_run(esn, xs).states])   # each step's state: a 1-tuple (h,)
    train, washout = 200, 20
    readout = rnn.fit_readout(states[:train], ys[:train], ridge=1e-6, washout=washout)
    esn.load_state_dict({**esn.state_dict(), "V": readout.weight.data, "c": readout.bias.data})
    pred = states[train:] @ esn.V.data.T + esn.c.data
    nrmse = float(np.sqrt(np.mean((pred - ys[train:]) ** 2)) / np.std(ys[train:]))
    radius = float(np.max(np.abs(np.linalg.eigvals(esn.weight_hh.data))))
    return viz.draw_rolled(esn), (
        f"§10.8: rnn.EchoState, a reservoir of {esn.hidden_size} leaky units h(t) = (1 − a) h(t−1) + "
        f"a tanh(W_in x(t) + W h(t−1) + b), a = {esn.leak}, whose W_in, W and b are drawn at random — W's "
        f"spectral radius, its largest |eigenvalue|, is {radius:.2f} — and frozen (marked so); only the "
        "readout o(t) = V h(t) + c learns, here by ridge regression, in closed form, "
        f"to predict a sine wave one step ahead: NRMSE {nrmse:.1e} on the {len(xs) - train} steps after "
        f"the {train} it was fitted on.")


@picture("10.16", "fig10-16-lstm-ops")
def lstm_ops(lab):
    return viz.draw_rolled(rnn.LSTMCell(3, 4, rng=rng(18)), detail="ops"), (
        "Fig. 10.16: rnn.LSTMCell, every op. Gates i, f, o = σ(…) and the candidate g = tanh(…), each "
        "from x(t) and h(t−1); the cell state c(t) = f ⊙ c(t−1) + i ⊙ g — a self-loop whose weight the "
        "forget gate sets — and h(t) = o ⊙ tanh(c(t)) (eqs. 10.40–10.44, where the input gate is g, the "
        "output gate q and the state s; the names here are PyTorch's).")


@picture("10.10.2", "sec10-10-gru-ops")
def gru_ops(lab):
    return viz.draw_rolled(rnn.GRUCell(3, 4, rng=rng(19)), detail="ops"), (
        "§10.10.2: rnn.GRUCell, every op. The reset gate r picks how much of h(t−1) enters the candidate "
        "n = tanh(…), and the update gate z mixes: h(t) = (1 − z) ⊙ n + z ⊙ h(t−1) (eqs. 10.45–10.47; the "
        "book calls z the update gate u).")
