"""`minigrad demo`: watch an LSTM and an Elman RNN learn the Zen of Python, then see why they differ.

Writes into the output folder: the rolled and unrolled graphs (block and op
detail), the gradient-flow picture (‖∂L/∂h(t)‖ against t for both cells),
the loss curves and an index.html showing them all.
"""
from __future__ import annotations

import html
import time

import numpy as np

import minigrad as mg
import viz

from . import plots
from .charlm import CharModel, Trainer, sample
from .commands import make_optimizer, progress
from .text import Vocab, zen_of_python

SEQ_LEN, BATCH, HIDDEN, FLOW_T = 25, 8, 64, 40


def outputs():
    """The name of every file run_demo writes, known before it trains: the command says which it replaces.

    A graph is rendered as .svg with its DOT source (.gv) beside it.
    """
    graphs = [f"{cell}-unrolled-grad" for cell in ("lstm", "elman")]
    graphs += [f"lstm-{kind}-{detail}" for detail in ("block", "ops") for kind in ("rolled", "unrolled")]
    return ["loss.svg", "gradient-flow.svg", *(g + ext for g in graphs for ext in (".svg", ".gv")), "index.html"]


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


def run_demo(out, seconds, backend):
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
    items = "\n".join(
        f'<figure><figcaption>{html.escape(captions.get(key, key))}</figcaption>'
        f'<img src="{html.escape(path.name)}" alt="{html.escape(key)}"></figure>'
        for key, path in files.items())
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>minigrad demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "border:1px solid #ddd}figure{margin:2em 0}figcaption{margin-bottom:.5em}</style></head><body>"
        f"<h1>minigrad demo</h1>\n{items}\n</body></html>\n", encoding="utf-8")
