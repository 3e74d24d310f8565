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
    """‖∂L/∂h(t)‖ for t = 1..T when L is the loss at the last step only: how far back the error reaches."""
    inputs, targets = ids[:FLOW_T, None], ids[1:FLOW_T + 1, None]
    logits, result = model(inputs, backend="graph")
    mg.cross_entropy(logits[-1:], targets[-1]).backward()
    norms = [float(np.linalg.norm(s[0].grad)) if s[0].grad is not None else 0.0 for s in result.states]
    return norms, result


def run_demo(out, seconds, backend):
    text = zen_of_python()
    vocab = Vocab.of(text)
    ids = vocab.encode(text)
    print(f"Training on the Zen of Python ({len(text)} characters, {len(vocab)} distinct) "
          f"for about {seconds:.0f} s: an LSTM, then an Elman RNN for contrast.")
    models = {name: train_for(name, cell, ids, vocab, seconds / 2, backend)
              for name, cell in (("LSTM", "lstm"), ("Elman", "elman"))}

    files = {}

    def save_svg(name, svg_text):
        (out / name).write_text(svg_text, encoding="utf-8")
        files[name] = out / name

    lstm = models["LSTM"][0].cell
    for detail in ("block", "ops"):
        for name, graph in ((f"rolled-{detail}", viz.draw_rolled(lstm, detail=detail)),
                            (f"unrolled-{detail}", viz.draw_unrolled(lstm, steps=3, detail=detail))):
            files[name + ".svg"] = viz.render(graph, out / f"lstm-{name}.svg", format="svg")

    flows = {name: gradient_flow(m, ids) for name, (m, _) in models.items()}
    steps = list(range(1, FLOW_T + 1))
    save_svg("gradient-flow.svg", plots.chart([
        {"series": {name: (steps, flows[name][0])}, "title": f"{name}: ‖∂L/∂h(t)‖, L = loss at t={FLOW_T}",
         "xlabel": "time step t", "ylabel": "gradient norm (log scale)", "logy": True}
        for name in models]))
    for name, (_, result) in flows.items():
        files[f"{name}-grad.svg"] = viz.render(viz.draw_unrolled(result, grad=True, collapse=3),
                                               out / f"{name.lower()}-unrolled-grad.svg", format="svg")
    save_svg("loss.svg", plots.chart([{"series": {n: (list(range(1, len(t.losses) + 1)), t.losses)
                                                  for n, (_, t) in models.items()},
                                       "title": "training loss (cross-entropy per character)",
                                       "xlabel": "step", "ylabel": "loss"}], width=620))
    write_index(out, files)
    print("\nWrote:")
    for path in [*files.values(), out / "index.html"]:
        print(f"  {path}")
    return 0


CAPTIONS = {
    "loss.svg": "Training loss of both models on the same text: the LSTM's gates let it fit faster.",
    "gradient-flow.svg": "How much of the last step's error reaches each earlier hidden state: the Elman "
                         "RNN's gradient vanishes within a few steps, the LSTM's persists.",
    "rolled-block.svg": "The LSTM cell as the textbook draws it: one step whose state feeds back through a "
                        "one-step delay (the black square).",
    "rolled-ops.svg": "The same rolled graph with every engine op of one step.",
    "unrolled-block.svg": "Unfolded over time: one box per step, the same parameters feeding every step.",
    "unrolled-ops.svg": "The unfolded graph with every op; backpropagation through time runs right to left here.",
    "LSTM-grad.svg": "The LSTM's unrolled graph coloured by ‖∂L/∂h(t)‖ after backward().",
    "Elman-grad.svg": "The Elman RNN's unrolled graph coloured by ‖∂L/∂h(t)‖: watch the colour fade.",
}


def write_index(out, files):
    items = "\n".join(
        f'<figure><figcaption>{html.escape(CAPTIONS.get(key, key))}</figcaption>'
        f'<img src="{html.escape(path.name)}" alt="{html.escape(key)}"></figure>'
        for key, path in files.items())
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>minigrad demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "border:1px solid #ddd}figure{margin:2em 0}figcaption{margin-bottom:.5em}</style></head><body>"
        f"<h1>minigrad demo</h1>\n{items}\n</body></html>\n", encoding="utf-8")
