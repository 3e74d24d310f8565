"""One function per subcommand; each takes the parsed arguments and returns an exit code."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import minigrad as mg

from .errors import UsageError

OPTIMIZERS = {"adagrad": ("Adagrad", 0.1), "adam": ("Adam", 3e-3), "sgd": ("SGD", 0.5)}


def make_optimizer(name, params, lr=None):
    cls, default_lr = OPTIMIZERS[name]
    return getattr(mg.optim, cls)(params, lr=lr or default_lr)


def writable_dir(path, what="output folder"):
    """Create `path` if needed and prove we can write there, before any work is done."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        # mkstemp's O_EXCL: the probe can never be, and so never delete, a file of the user's.
        fd, probe = tempfile.mkstemp(prefix=".minigrad-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write to {what} {path}: {e.strerror or e}") from None
    return p


def claim_outputs(out, names):
    """Which of the files `names` are already in `out` (writing replaces them); UsageError if one is not a file."""
    present = []
    for name in names:
        path = out / name
        if path.exists() and not path.is_file():
            raise UsageError(f"cannot write {path}: a folder or other non-file of that name is in the way")
        if path.exists():
            present.append(name)
    return present


def report_replaced(out, names):
    if names:
        print(f"replaced {len(names)} earlier file{'s' * (len(names) > 1)} in {out}: {', '.join(names)}")


def progress(total, initial, quiet, desc):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=quiet, desc=desc, unit="step", dynamic_ncols=True,
                file=sys.stderr)


# --- train / sample ------------------------------------------------------------------

def _load(path, module=None, optimizer=None):
    """mg.load, with a checkpoint the user gave us that we cannot use reported as a usage error."""
    if Path(path).is_dir():
        raise UsageError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not Path(path).exists():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        return mg.load(path, module, optimizer)
    except mg.CheckpointError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot read checkpoint {path}: {e.strerror or e}") from None


def _charlm_meta(meta, path):
    """`meta` if it describes a character model we can build; else a UsageError (before the model is built)."""
    from .charlm import CELLS

    if meta.get("kind") != "charlm":
        raise UsageError(f"{path} is not a character-model checkpoint")
    fits = {"cell": lambda v: v in CELLS,
            "hidden": lambda v: type(v) is int and v > 0,
            "embed": lambda v: type(v) is int and v >= 0,
            "vocab": lambda v: isinstance(v, list) and v and all(isinstance(c, str) and len(c) == 1 for c in v)}
    bad = [k for k, ok in fits.items() if k not in meta or not ok(meta[k])]
    if bad:
        raise UsageError(f"{path}: damaged character-model checkpoint (bad or missing {', '.join(bad)} in its meta)")
    return meta


def _check_resumable(meta, args, vocab):
    _charlm_meta(meta, args.checkpoint)
    diffs = [f"--{k.replace('_', '-')} {getattr(args, k)} but the checkpoint has {meta[k]}"
             for k in ("cell", "hidden", "embed") if meta[k] != getattr(args, k)]
    if meta["vocab"] != vocab.chars:
        diffs.append("the text's vocabulary differs from the checkpoint's "
                     f"({len(vocab)} vs {len(meta['vocab'])} characters)")
    if diffs:
        raise UsageError(f"checkpoint {args.checkpoint} is from a different model: " + "; ".join(diffs))
    if not meta.get("step", 0) < args.steps:  # nothing to train: say so rather than re-save the same run
        raise UsageError(f"checkpoint {args.checkpoint} is already at step {meta.get('step')}; "
                         f"--steps {args.steps} must be larger to continue it")


def _checkpoint_path(args):
    """The --checkpoint path, checked before any training: what --resume/--force say, and that we can write it."""
    if not args.checkpoint:
        if args.resume:
            raise UsageError("--resume needs --checkpoint")
        return None
    ckpt = Path(args.checkpoint)
    if ckpt.is_dir():
        raise UsageError(f"--checkpoint {ckpt} is a folder; give the checkpoint's file name")
    if args.resume and not ckpt.is_file():
        raise UsageError(f"--resume: no checkpoint at {ckpt}")
    if not args.resume and ckpt.exists() and not args.force:
        raise UsageError(f"{ckpt} exists: pass --resume to continue it or --force to start over")
    if ckpt.exists() and not ckpt.is_file():
        raise UsageError(f"--checkpoint {ckpt} is not a regular file")
    writable_dir(ckpt.parent, "checkpoint folder")
    return ckpt


def _save_or_rescue(ckpt, model, opt, meta):
    """mg.save to `ckpt`; if that fails, save beside it (or here, or in tmp) and stop with a UsageError saying where."""
    try:
        mg.save(ckpt, model, opt, meta=meta)
        return
    except OSError as e:
        why = f"{e.strerror or e}"
    name = f"{ckpt.name}.rescue-{os.getpid()}.npz"
    folders = dict.fromkeys([ckpt.parent, Path.cwd(), Path(tempfile.gettempdir())])
    for rescue in (folder / name for folder in folders):
        if rescue.exists():  # never over a file that is not ours to replace
            continue
        try:
            mg.save(rescue, model, opt, meta=meta)
        except OSError:
            continue
        raise UsageError(f"cannot save checkpoint {ckpt}: {why}; the training so far (step {meta['step']}) "
                         f"was saved to {rescue} instead")
    raise UsageError(f"cannot save checkpoint {ckpt}: {why}; nor could the training so far be saved as {name} "
                     f"in {', '.join(str(f) for f in folders)}")


class Terminated(KeyboardInterrupt):
    """SIGTERM during training: a KeyboardInterrupt, so it stops the loop and saves as Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_interrupts():
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def train(args):
    if args.task:
        return train_task(args)
    from .charlm import CharModel, Trainer, sample
    from .text import Vocab, read_text

    text = read_text(args.text, args.seq_len)
    vocab = Vocab.of(text)
    ckpt = _checkpoint_path(args)

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
            _save_or_rescue(ckpt, model, opt, {"kind": "charlm", "cell": args.cell, "hidden": args.hidden,
                                               "embed": args.embed, "vocab": vocab.chars, "seed": args.seed,
                                               **trainer.meta()})

    bar = progress(args.steps, trainer.step, args.quiet, f"train {args.cell}")
    interrupted = None
    try:
        with _sigterm_interrupts():
            _train_loop(trainer, args, bar, lambda step: sample(model, vocab, 120, 0.8, seed=step), save)
    except KeyboardInterrupt as e:
        interrupted = e
    finally:
        bar.close()  # before any message, so it does not land on the bar's line
    save()
    if interrupted is not None:
        how = "terminated (SIGTERM)" if isinstance(interrupted, Terminated) else "interrupted"
        print(f"{how} at step {trainer.step}" + (f"; checkpoint saved to {ckpt}" if ckpt else ""), file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(interrupted, Terminated) else 130
    why = (f"; the step is not compiled whole: {trainer.why_not_compiled}"
           if trainer.why_not_compiled and args.backend != "graph" else "")
    print(f"done: step {trainer.step}, loss {trainer.losses[-1]:.4f} (backend {trainer.backend_used}{why})"
          + (f"; checkpoint {ckpt}" if ckpt else ""))
    return 0


def _train_loop(trainer, args, bar, draw, save):
    start, start_step = time.perf_counter(), trainer.step
    while trainer.step < args.steps:
        loss = trainer.train_step()
        rate = (trainer.step - start_step) * args.seq_len * trainer.data.shape[0] / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{loss:.3f}", chars_per_s=f"{rate:,.0f}", refresh=False)
        bar.update(1)
        if trainer.step % args.sample_every == 0:
            bar.write(f"--- step {trainer.step}, loss {loss:.3f} ---\n{draw(trainer.step)}\n")
        if trainer.step % args.save_every == 0:
            save()


def sample(args):
    from .charlm import CharModel, sample as draw
    from .text import Vocab

    meta = _charlm_meta(_load(args.checkpoint), args.checkpoint)
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

    model, held_out = fit(args.task, args.cell, args.T, args.hidden, args.steps, args.batch,
                          lambda params: make_optimizer(args.optim, params, args.lr), args.clip, args.backend,
                          args.seed, on_step)
    bar.close()
    skipped = f"; {model.skipped} updates skipped for a non-finite gradient" if model.skipped else ""
    print(f"{args.task} T={args.T} {args.cell}: held-out loss {held_out:.4f} "
          f"(baseline {BASELINES[args.task](args.T):.4f}; backend {used[0]}{skipped})")
    return 0


# --- pictures and checks -------------------------------------------------------------

def viz(args):
    import viz as v
    from .charlm import CELLS

    out = writable_dir(args.out)
    stems = {name: f"{args.cell}-{name}-{args.detail}" for name in ("rolled", "unrolled")}
    # v.render writes the picture and its DOT source (.gv) beside it.
    replaced = claim_outputs(out, [stem + ext for stem in stems.values() for ext in (f".{args.format}", ".gv")])
    cell = CELLS[args.cell](args.input, args.hidden, rng=np.random.default_rng(0))
    pictures = {"rolled": v.draw_rolled(cell, detail=args.detail, params=args.params),
                "unrolled": v.draw_unrolled(cell, steps=args.steps, detail=args.detail, collapse=args.collapse,
                                            params=args.params)}
    for name, graph in pictures.items():
        path = out / f"{stems[name]}.{args.format}"
        v.render(graph, path, format=args.format)
        print(path)
    report_replaced(out, replaced)
    return 0


def gradcheck(args):
    from .gradcheck_cell import check_cell, load_cell_class

    cls = load_cell_class(args.cell)
    report = check_cell(cls, args.examples, args.backend, args.seed)
    print(report.summary())
    return 0 if report.ok else 1


def kernel(args):
    from rnn.kernels import UnsupportedCellError, kernel_source

    from .gradcheck_cell import load_cell_class, make_cell

    cell = make_cell(load_cell_class(args.cell), args.input, args.hidden, seed=0)
    try:
        print(kernel_source(cell, batch=args.batch, dtype=args.dtype), end="")
    except UnsupportedCellError as e:  # the graph backend still runs it: say why, as rnn.run's fallback does
        raise UsageError(f"{args.cell}: {e}") from None
    return 0


def demo(args):
    from .demo import outputs, run_demo
    out = writable_dir(args.out)
    replaced = claim_outputs(out, outputs())
    code = run_demo(out, args.seconds, args.backend, args.adding_steps)
    report_replaced(out, replaced)
    return code


def figures(args):
    from .figures import outputs, run_figures
    out = writable_dir(args.out)
    replaced = claim_outputs(out, outputs())
    code = run_figures(out)
    report_replaced(out, replaced)
    return code
