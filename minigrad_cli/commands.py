"""One function per subcommand; each takes the parsed arguments and returns an exit code."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

import minigrad as mg

from .errors import UsageError

OPTIMIZERS = {"adagrad": ("Adagrad", 0.1), "adam": ("Adam", 3e-3), "sgd": ("SGD", 0.5)}


def make_optimizer(name, params, lr=None):
    cls, default_lr = OPTIMIZERS[name]
    return getattr(mg.optim, cls)(params, lr=lr or default_lr)


def writable_dir(path):
    """Create `path` if needed and prove we can write there, before any work is done."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".minigrad-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output folder {path}: {e.strerror or e}") from None
    return p


def progress(total, initial, quiet, desc):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=quiet, desc=desc, unit="step", dynamic_ncols=True,
                file=sys.stderr)


# --- train / sample ------------------------------------------------------------------

def _load(path, module=None, optimizer=None):
    """mg.load, with a checkpoint the user gave us that we cannot use reported as a usage error."""
    try:
        return mg.load(path, module, optimizer)
    except mg.CheckpointError as e:
        raise UsageError(str(e)) from None


def _check_resumable(meta, args, vocab):
    if meta.get("kind") != "charlm":
        raise UsageError(f"{args.checkpoint} is not a character-model checkpoint")
    diffs = [f"--{k.replace('_', '-')} {getattr(args, k)} but the checkpoint has {meta[k]}"
             for k in ("cell", "hidden", "embed") if meta[k] != getattr(args, k)]
    if meta["vocab"] != vocab.chars:
        diffs.append("the text's vocabulary differs from the checkpoint's "
                     f"({len(vocab)} vs {len(meta['vocab'])} characters)")
    if diffs:
        raise UsageError(f"checkpoint {args.checkpoint} is from a different model: " + "; ".join(diffs))


def train(args):
    if args.task:
        return train_task(args)
    from .charlm import CharModel, Trainer, sample
    from .text import Vocab, read_text

    text = read_text(args.text, args.seq_len + 2)
    vocab = Vocab.of(text)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is not None:
        if args.resume and not ckpt.is_file():
            raise UsageError(f"--resume: no checkpoint at {ckpt}")
        if not args.resume and ckpt.exists() and not args.force:
            raise UsageError(f"{ckpt} exists: pass --resume to continue it or --force to start over")
        writable_dir(ckpt.parent)
    elif args.resume:
        raise UsageError("--resume needs --checkpoint")

    model = CharModel(len(vocab), args.cell, args.hidden, args.embed, seed=args.seed)
    opt = make_optimizer(args.optim, model.parameters(), args.lr)
    trainer = Trainer(model, opt, vocab.encode(text), args.seq_len, args.batch, args.clip, args.backend)
    if args.resume:
        meta = _load(ckpt)
        _check_resumable(meta, args, vocab)
        _load(ckpt, model, opt)
        trainer.restore(meta)

    def save():
        if ckpt is not None:
            mg.save(ckpt, model, opt, meta={"kind": "charlm", "cell": args.cell, "hidden": args.hidden,
                                            "embed": args.embed, "vocab": vocab.chars, "seed": args.seed,
                                            **trainer.meta()})

    bar = progress(args.steps, trainer.step, args.quiet, f"train {args.cell}")
    start, start_step = time.perf_counter(), trainer.step
    try:
        while trainer.step < args.steps:
            loss = trainer.train_step()
            rate = (trainer.step - start_step) * args.seq_len * trainer.data.shape[0] / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss:.3f}", chars_per_s=f"{rate:,.0f}", refresh=False)
            bar.update(1)
            if trainer.step % args.sample_every == 0:
                bar.write(f"--- step {trainer.step}, loss {loss:.3f} ---\n"
                          f"{sample(model, vocab, 120, 0.8, seed=trainer.step)}\n")
            if trainer.step % args.save_every == 0:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        print(f"interrupted at step {trainer.step}" + (f"; checkpoint saved to {ckpt}" if ckpt else ""),
              file=sys.stderr)
        return 130
    bar.close()
    save()
    print(f"done: step {trainer.step}, loss {trainer.losses[-1]:.4f} (backend {trainer.backend_used})"
          + (f"; checkpoint {ckpt}" if ckpt else ""))
    return 0


def sample(args):
    from .charlm import CharModel, sample as draw
    from .text import Vocab

    meta = _load(args.checkpoint)
    if meta.get("kind") != "charlm":
        raise UsageError(f"{args.checkpoint} is not a character-model checkpoint")
    vocab = Vocab(meta["vocab"])
    model = CharModel(len(vocab), meta["cell"], meta["hidden"], meta["embed"])
    _load(args.checkpoint, model)
    print(draw(model, vocab, args.length, args.temperature, args.prime, args.seed))
    return 0


def train_task(args):
    from .tasks import BASELINES, fit

    if args.checkpoint or args.resume:
        raise UsageError("--checkpoint/--resume are for --text training; --task runs are short and seeded")
    bar = progress(args.steps, 0, args.quiet, f"{args.task} T={args.T} {args.cell}")
    used = []

    def on_step(loss, result):
        used[:] = [result.backend]
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(1)

    _, held_out = fit(args.task, args.cell, args.T, args.hidden, args.steps, args.batch,
                      lambda params: make_optimizer(args.optim, params, args.lr), args.clip, args.backend,
                      args.seed, on_step)
    bar.close()
    print(f"{args.task} T={args.T} {args.cell}: held-out loss {held_out:.4f} "
          f"(baseline {BASELINES[args.task](args.T):.4f}; backend {used[0]})")
    return 0


# --- pictures and checks -------------------------------------------------------------

def viz(args):
    import viz as v
    from .charlm import CELLS

    out = writable_dir(args.out)
    cell = CELLS[args.cell](args.input, args.hidden, rng=np.random.default_rng(0))
    pictures = {"rolled": v.draw_rolled(cell, detail=args.detail),
                "unrolled": v.draw_unrolled(cell, steps=args.steps, detail=args.detail, collapse=args.collapse)}
    for name, graph in pictures.items():
        path = out / f"{args.cell}-{name}-{args.detail}.{args.format}"
        v.render(graph, path, format=args.format)
        print(path)
    return 0


def gradcheck(args):
    from .gradcheck_cell import check_cell, load_cell_class

    cls = load_cell_class(args.cell)
    report = check_cell(cls, args.examples, args.backend, args.seed)
    print(report.summary())
    return 0 if report.ok else 1


def demo(args):
    from .demo import run_demo
    return run_demo(writable_dir(args.out), args.seconds, args.backend)

