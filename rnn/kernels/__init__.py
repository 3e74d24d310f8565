"""The Numba backend of rnn.run: a small compiler from a cell's traced step to fused kernels.

    rolled step graph ──passes──▶ Plan ──emit──▶ Python source ──cache──▶ compiled module
                                                                            │
    rnn.run(cell, xs, backend="numba") ◀──binding: one engine node──────────┘

    ir.py        the IR: nodes, phases, the plan; what the generator knows about each op
    passes.py    rolled graph -> plan, in named passes (classify, hoist, liveness, phases, storage)
    describe.py  what the step calls each value, for the kernels' comments
    arrays.py    the one table of the kernels' array kinds and their name prefixes
    emit.py      plan -> the source of forward() and backward()
    nd.py        the loop nests of values the fused (batch, width) loops cannot hold (emit's nd sections)
    statements.py  the source as lines and loops, rendered once
    helpers.py   the fixed Numba helpers the kernels call: scalar tanh/sigmoid, the per-step product
    cache.py     generated sources as importable modules, so Numba's disk cache works
    binding.py   the kernels as one engine node: inputs from tensors, gradients back to them
    head.py      o(t) and L(t), which nothing carries forward, over all steps at once around the kernels
    training.py  a char model's whole training step (kernels, read-out, loss, gradients, clip, update)
                 as one generated function
    blas.py      the GEMMs around the kernels, on the kernels' BLAS
    fingerprint.py  when a prepared kernel may be reused for a cell

`kernel_source(cell)` shows what the generator writes for a cell, without compiling anything.
"""
from __future__ import annotations

import numpy as np

from .ir import KernelError, UnsupportedCellError


def kernel_source(cell, batch=1, dtype=None, context=None):
    """The generated forward and backward kernels of `cell`'s step for batches of `batch`, as Python
    source: written, not compiled, and the kernel cache left alone.  dtype: the working dtype the
    source is written for (its scalar helpers), by default the cell's.  context: what the step reads
    as its context (tensors or arrays, as rnn.run takes it), for a step that reads one.
    UnsupportedCellError (with the op and the reason) where the step cannot be compiled."""
    from ..rolled import Context
    from .emit import generate
    from .passes import make_plan
    reads = cell.reads() - {"t", "context"}
    if reads:
        raise UnsupportedCellError(f"kernel_source: a step that reads {', '.join(sorted(reads))} is not compiled")
    if ("context" in cell.reads()) != (context is not None):
        raise TypeError(f"kernel_source({type(cell).__name__}): pass context= exactly when the step reads one")
    spec = None if context is None else Context.of(
        tuple(np.asarray(getattr(c, "data", c)) for c in context) if isinstance(context, (tuple, list))
        else np.asarray(getattr(context, "data", context)))
    plan = make_plan(cell.rolled(int(batch), context=spec))
    if dtype is not None:
        plan.dtype = np.dtype(dtype).name
    return generate(plan)[0]


__all__ = ["kernel_source", "KernelError", "UnsupportedCellError"]
