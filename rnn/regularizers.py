"""A regulariser on the gradient itself: keep the error's norm as it flows back through time.

``flow_regularizer(result, loss=None, *, exact=False) -> Ω``, a scalar Tensor to add to the loss:

    Ω = Σ_t ( ‖(∇_{h(t)} L) ∂h(t)/∂h(t−1)‖ / ‖∇_{h(t)} L‖ − 1 )²

(Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks", §3.3;
Goodfellow et al. eq. 10.50) — the chapter's remedy for vanishing gradients besides gating: it asks
each step's Jacobian to pass the gradient reaching h(t) back to h(t−1) at the same norm.  For a tanh
Elman net, h(t) = tanh(b + W h(t−1) + U x(t)), the product is the row vector
(∇_{h(t)} L) diag(1 − h(t)²) W.

It is computed from a graph-backend run's unfolded graph: ∇_{h(t)} L for every state by one
backward pass (`mg.grad`), then, per step, the vector-Jacobian product of h(t) with respect to
h(t−1) by a recorded backward (`create_graph=True`), so Ω is a function of the parameters that
`backward()` differentiates — through h(t)'s and h(t−1)'s own dependence on them too.  As Pascanu
et al. do, ∇_{h(t)} L is held constant when Ω is differentiated; `exact=True` records it as well,
so the gradient of Ω also flows through ∇_{h(t)} L (a third backward pass over the net, and slower).

A state is everything the cell carries (an LSTM's h and c together, every layer of a stack), and
t runs over the transitions the run computed, h(1) → h(2) up to h(T−1) → h(T).  For a batch each
sequence has its own Jacobians: its terms are taken per sequence and Ω is their batch mean; a
sequence whose gradient at step t is exactly zero (no loss reaches it) adds nothing for that step.
"""
from __future__ import annotations

import minigrad as mg


def flow_regularizer(result, loss=None, *, exact=False):
    """Ω for the run `result` (from rnn.run(..., create_graph=True), or backend="graph") and its scalar
    `loss` (default result.loss); see the module docstring.  exact=True also differentiates through
    ∇_{h(t)} L."""
    if result.backend != "graph":
        raise ValueError(f"flow_regularizer: this run used backend {result.backend!r}, whose fused kernel "
                         "keeps no per-step graph to differentiate; run it with rnn.run(..., create_graph=True) "
                         "(or backend=\"graph\")")
    name = result.graph.cell  # the cell's name
    loss = result.loss if loss is None else loss
    if loss is None:
        raise ValueError(f"flow_regularizer: the run of {name} has no loss (it was given no targets); pass "
                         "loss=, the scalar whose gradient flows back through the states")
    if loss.size != 1:
        raise ValueError(f"flow_regularizer: loss must be a scalar, got shape {loss.shape}")
    if not loss.requires_grad:
        raise ValueError(f"flow_regularizer: the loss does not require grad, so the run of {name} recorded no "
                         "graph to differentiate (was it run under mg.no_grad()?)")
    back = {lp.name: lp.delay for lp in result.graph.rolled.loops if lp.delay != 1}
    if back:
        raise ValueError(f"flow_regularizer: {name} carries states {back} (name: delay) over other than one "
                         "step; Ω compares h(t) with h(t−1), for states read at the next step")
    # the states that carry a gradient (one that no input requiring grad reaches has none)
    steps = [tuple(s for s in step if s.requires_grad) for step in result.states]
    if not all(steps):
        raise ValueError(f"flow_regularizer: the states of {name} do not require grad (its parameters are "
                         "frozen and xs is a constant?): no gradient flows through them to regularise")
    if len(steps) < 2:
        return mg.tensor(0.0, dtype=loss.dtype)
    flat = [s for step in steps[1:] for s in step]
    grads = iter(mg.grad(loss, flat, create_graph=exact))
    omega = None
    for prev, now in zip(steps[:-1], steps[1:]):
        v = tuple(next(grads) for _ in now)                                  # ∇_{h(t)} L
        u = mg.grad(now, prev, grad_outputs=v, create_graph=True)           # (∇_{h(t)} L) ∂h(t)/∂h(t−1)
        norm_u, _ = _norm(u)
        norm_v, reached = _norm(v)
        ratio = norm_u / (norm_v + (1 - reached))                            # 0 / 1 where no gradient arrives
        term = mg.mean(((ratio - 1) ** 2) * reached)
        omega = term if omega is None else omega + term
    return omega


def _norm(parts):
    """Each sequence's Euclidean norm over a state's parts (B, ...), and a mask of where it is not zero.
    sqrt is not differentiable at 0: there the norm is sqrt(0 + 1) · 0, whose gradient is 0, not NaN."""
    squares = None
    for p in parts:
        s = (p * p).sum(axis=tuple(range(1, p.ndim))) if p.ndim > 1 else p * p
        squares = s if squares is None else squares + s
    nonzero = mg.less(0.0, squares)
    return (squares + (1 - nonzero)) ** 0.5 * nonzero, nonzero
