"""`minigrad demo`: watch an LSTM and an Elman RNN learn the Zen of Python, then see where they differ.

Writes into the output folder: the rolled and unrolled graphs (block and op
detail), the gradient-flow picture (‖∂L/∂h(t)‖ against t for both cells),
the loss curves, and — where the chapter's §10.7 holds reliably — the adding
problem at T = 50: the LSTM learns it, the tanh net stays at the baseline, and
the gradient-flow curves and coloured unrolled graphs show why; an index.html
shows them all.
"""
from __future__ import annotations

import time

import numpy as np

import minigrad as mg
import viz

from . import plots
from .charlm import CharModel, Trainer, sample
from .commands import make_optimizer, progress
from .pages import write_page
from .tasks import BASELINES, adding, fit
from .text import Vocab, zen_of_python

SEQ_LEN, BATCH, HIDDEN, FLOW_T = 25, 8, 64, 40
# The adding problem at settings pinned for a reliable contrast: at T = 50 the LSTM reaches a held-out
# MSE near 0.001 in 1,200 steps (seeds 0-2 measured: 0.0011-0.0015) while the tanh net stays near 1/6.
ADDING_T, ADDING_HIDDEN, ADDING_STEPS, ADDING_SEED = 50, 32, 1200, 0


def outputs():
    """The name of every file run_demo writes, known before it trains: the command says which it replaces.

    A graph is rendered as .svg with its DOT source (.gv) beside it.
    """
    graphs = [f"{cell}-unrolled-grad" for cell in ("lstm", "elman")]
    graphs += [f"lstm-{kind}-{detail}" for detail in ("block", "ops") for kind in ("rolled", "unrolled")]
    graphs += [f"adding-{cell}-unrolled-grad" for cell in ("lstm", "elman")]
    return ["loss.svg", "gradient-flow.svg", "adding-loss.svg", "adding-gradient-flow.svg",
            *(g + ext for g in graphs for ext in (".svg", ".gv")), "index.html"]


def train_for(name, cell, ids, vocab, seconds, backend):
    """Train one model for about `seconds`, printing samples as it learns."""
    model = CharModel(len(vocab), cell, HIDDEN, seed=0)
    trainer = Trainer(model, make_optimizer("adam", model.parameters(), 3e-3), ids, SEQ_LEN, BATCH,
                      ("norm", 5.0), backend)
    bar = progress(None, 0, False, f"{name:>5}")
    start = last_sample = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        loss = trainer.train_step()
        elapsed = now - start
        bar.total = max(trainer.step, int(trainer.step * seconds / max(elapsed, 1e-3)))
        bar.set_postfix(loss=f"{loss:.3f}", chars_per_s=f"{trainer.step * SEQ_LEN * BATCH / max(elapsed, 1e-3):,.0f}",
                        refresh=False)
        bar.update(1)
        if now - last_sample > seconds / 3:
            last_sample = now
            bar.write(f"[{name} step {trainer.step}, loss {loss:.3f}] "
                      + sample(model, vocab, 80, 0.7, seed=trainer.step).replace("\n", " "))
    bar.close()
    print(f"[{name} final, loss {trainer.losses[-1]:.3f}] " + sample(model, vocab, 120, 0.7).replace("\n", " "))
    return model, trainer


def gradient_flow(model, ids):
    """‖∂L/∂s(t)‖ per state s (h, and c for the LSTM), t = 1..T, when L is the loss at the last step only."""
    inputs, targets = ids[:FLOW_T, None], ids[1:FLOW_T + 1, None]
    logits, result = model(inputs, backend="graph")
    mg.cross_entropy(logits[-1:], targets[-1]).backward()
    names = result.graph.state_names
    norms = {name: [float(np.linalg.norm(s[k].grad)) if s[k].grad is not None else 0.0 for s in result.states]
             for k, name in enumerate(names)}
    return norms, result


def adding_section(out, steps, backend):
    """§10.7 where it holds: the adding problem at T = ADDING_T for an LSTM and a tanh net. Returns
    {name: path} of what it wrote and their captions, with the numbers it measured."""
    print(f"\nThe adding problem (T = {ADDING_T}): two marked numbers to add across the sequence; always "
          f"answering 1 scores MSE {BASELINES['adding'](ADDING_T):.3f}.")
    files, captions, curves, flows, scores = {}, {}, {}, {}, {}
    for name, cell in (("LSTM", "lstm"), ("tanh RNN", "elman")):
        losses = []
        start = time.perf_counter()
        model, mse = fit("adding", cell, ADDING_T, ADDING_HIDDEN, steps, backend=backend, seed=ADDING_SEED,
                         on_step=lambda loss, _: losses.append(loss))
        curves[name], scores[name] = losses, mse
        xs, ys = adding(ADDING_T, 64, np.random.default_rng(ADDING_SEED + 2))
        loss, result = model.loss(xs, ys, backend="graph")   # the explicit graph, to draw and colour it
        loss.backward()
        flows[name] = (result, [float(np.linalg.norm(s[0].grad)) for s in result.states])
        print(f"  {name:<8} held-out MSE {mse:.4f} after {steps} steps ({time.perf_counter() - start:.1f} s)")
    base = BASELINES["adding"](ADDING_T)
    reach = {name: norms[0] / norms[-1] for name, (_, norms) in flows.items()}
    (out / "adding-loss.svg").write_text(plots.chart([{
        "series": {n: (list(range(1, len(c) + 1)), c) for n, c in curves.items()},
        "title": f"adding problem, T = {ADDING_T}: training loss (baseline {base:.3f})",
        "xlabel": "step", "ylabel": "MSE", "logy": True}], width=620), encoding="utf-8")
    files["adding-loss.svg"] = out / "adding-loss.svg"
    steps_t = list(range(1, ADDING_T + 1))
    (out / "adding-gradient-flow.svg").write_text(plots.chart([{
        "series": {name: (steps_t, norms) for name, (_, norms) in flows.items()},
        "title": f"‖∂L/∂h(t)‖, L = the error of the answer at t = {ADDING_T}",
        "xlabel": "time step t", "ylabel": "gradient norm (log scale)", "logy": True}], width=620),
        encoding="utf-8")
    files["adding-gradient-flow.svg"] = out / "adding-gradient-flow.svg"
    for name, (result, _) in flows.items():
        key = f"adding-{'lstm' if name == 'LSTM' else 'elman'}-unrolled-grad"
        files[key + ".svg"] = viz.render(viz.draw_unrolled(result, grad=True, collapse=3), out / f"{key}.svg")
    said = ", ".join(f"{n} {scores[n]:.4f}" for n in scores)
    captions["adding-loss.svg"] = (
        f"§10.7, the adding problem (Hochreiter & Schmidhuber 1997) at T = {ADDING_T}: each step reads a "
        f"number and a marker, the answer at the end is the sum of the two marked numbers. Always answering 1 "
        f"scores {base:.3f}; held-out MSE after {steps} Adam steps: {said}.")
    captions["adding-gradient-flow.svg"] = (
        "Why: how much of the error at the answer reaches each earlier step. Through the tanh net's "
        "Jacobians diag(1 − h²) W it shrinks geometrically (Goodfellow et al. eq. 10.36–10.37); through the "
        "LSTM's cell state it is carried. Measured on this run, ‖∂L/∂h(1)‖ / ‖∂L/∂h(" + str(ADDING_T) + ")‖: "
        + ", ".join(f"{n} {r:.2g}" for n, r in reach.items()) + ".")
    captions["adding-lstm-unrolled-grad.svg"] = (
        f"The trained LSTM unrolled over the {ADDING_T} steps (the middle ones elided), each state coloured by "
        "‖∂L/∂h(t)‖ on a log scale.")
    captions["adding-elman-unrolled-grad.svg"] = (
        f"The tanh net on the same sequences: the colour falls through {_decades(reach['tanh RNN'])} along "
        "the chain.")
    print("  gradient reaching step 1, relative to the last: "
          + ", ".join(f"{n} {r:.2g}" for n, r in reach.items()))
    return files, captions


def _decades(ratio):
    """'n decades' for a ratio of norms, as the captions say it."""
    n = int(np.floor(np.log10(1 / ratio))) if 0 < ratio < 1 else 0
    return f"{n} decade{'s' * (n != 1)}" if n else "less than a decade"


def run_demo(out, seconds, backend, adding_steps=ADDING_STEPS):
    text = zen_of_python()
    vocab = Vocab.of(text)
    ids = vocab.encode(text)
    print(f"Training on the Zen of Python ({len(text)} characters, {len(vocab)} distinct) "
          f"for about {seconds:.0f} s: an LSTM, then an Elman RNN for contrast.")
    models = {name: train_for(name, cell, ids, vocab, seconds / 2, backend)
              for name, cell in (("LSTM", "lstm"), ("Elman", "elman"))}

    files, captions = {}, dict(CAPTIONS)

    def save_svg(name, svg_text):
        (out / name).write_text(svg_text, encoding="utf-8")
        files[name] = out / name

    save_svg("loss.svg", plots.chart([{"series": {n: (list(range(1, len(t.losses) + 1)), t.losses)
                                                  for n, (_, t) in models.items()},
                                       "title": "training loss (cross-entropy per character)",
                                       "xlabel": "step", "ylabel": "loss (nats)"}], width=620))
    flows = {name: gradient_flow(m, ids) for name, (m, _) in models.items()}
    steps = list(range(1, FLOW_T + 1))
    save_svg("gradient-flow.svg", plots.chart([
        {"series": {f"‖∂L/∂{s}(t)‖": (steps, v) for s, v in flows[name][0].items()},
         "title": f"{name}, L = loss at t={FLOW_T}",
         "xlabel": "time step t", "ylabel": "gradient norm (log scale)", "logy": True}
        for name in models], share_y=True))
    reach = {name: norms["h"][0] / norms["h"][-1] for name, (norms, _) in flows.items() if norms["h"][-1] > 0}
    measured = "; ".join(f"{name}: ‖∂L/∂h(1)‖ / ‖∂L/∂h({FLOW_T})‖ = {r:.2g}" for name, r in reach.items())
    print(f"Gradient flow after training, {measured}")
    captions["gradient-flow.svg"] += f" Measured on this run: {measured}."
    for name, (_, result) in flows.items():
        files[f"{name}-grad.svg"] = viz.render(viz.draw_unrolled(result, grad=True, collapse=3),
                                               out / f"{name.lower()}-unrolled-grad.svg", format="svg")
    lstm = models["LSTM"][0].cell
    for detail in ("block", "ops"):
        for name, graph in ((f"rolled-{detail}", viz.draw_rolled(lstm, detail=detail)),
                            (f"unrolled-{detail}", viz.draw_unrolled(lstm, steps=3, detail=detail))):
            files[name + ".svg"] = viz.render(graph, out / f"lstm-{name}.svg", format="svg")
    more, more_captions = adding_section(out, adding_steps, backend)
    files.update(more)
    captions.update(more_captions)
    write_index(out, files, captions)
    print("\nWrote:")
    for path in [*files.values(), out / "index.html"]:
        print(f"  {path}")
    return 0


CAPTIONS = {
    "loss.svg": "Training loss of both models on the same text, per step (the saw-tooth is the window's "
                "position in the text).",
    "gradient-flow.svg": "How much of the error at the last of 40 steps reaches each earlier hidden state, "
                         "on one shared log scale: the steeper the curve, the faster the gradient vanishes "
                         "going back in time (for the LSTM, the cell state c carries the rest).",
    "rolled-block.svg": "The LSTM cell as the textbook draws it: one step whose state feeds back through a "
                        "one-step delay (the black square).",
    "rolled-ops.svg": "The same rolled graph with every engine op of one step.",
    "unrolled-block.svg": "Unfolded over time: one box per step, the same parameters feeding every step.",
    "unrolled-ops.svg": "The unfolded graph with every op; backpropagation through time runs right to left here.",
    "LSTM-grad.svg": "The LSTM's unrolled graph coloured by ‖∂L/∂h(t)‖ after backward().",
    "Elman-grad.svg": "The Elman RNN's unrolled graph coloured by ‖∂L/∂h(t)‖.",
}


def write_index(out, files, captions):
    write_page(out, "minigrad demo", "Two character models trained on the Zen of Python, then the adding "
               "problem of §10.7; every number in a caption was measured in this run.",
               [(path.name, captions.get(key, key)) for key, path in files.items()])
