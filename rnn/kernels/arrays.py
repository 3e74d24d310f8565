"""The one table of the arrays a kernel pair reads and writes: their kinds and their name prefixes.

The emitter names every array it uses `prefix + what it is for` (S_h, XA_n3, dA_n9) and records
its kind; the binding (rnn.kernels.binding) allocates, fills and reads them by kind.  Shapes are
written with 'T', 'T+1', 'B', '2' (double-buffered by step parity) and integer widths.

    kind             prefix  holds                                                  shape        made by
    x                xs      the step inputs x(t)                                   (T, B, I)    the call
    state            S_      a state at every step, S[0] the initial one            (T+1, B, w)  the call, forward
    hoist            XA_     a hoisted product x(t) @ W for every step              (T, B, w)    the call (one GEMM),
                                                                                                 or a split call's
                                                                                                 blocks, per step
    hoist_left       XL_     its left operand, for those blocks                     (T, B, K)    the call
    hoist_weight     WX_     its right operand, row-major, for those blocks         (K, w)       the call
    rec              A_      an in-loop product, per step; one step's where the     (T, B, w)    forward
                             backward does not read it                              (1, B, w)
    rec_weight       W_      the right operand of an in-loop product                (K, N)       the call
    rec_weight_t     WT_     its transpose, row-major, for the backward's products  (N, K)       the call
    engine           P_      a parameter, constant or parameter-only value          its own      the call
    stored           V_ Y_   a value a later phase or a product reads (V_); an      (T, B, w)    forward
                             output the backward reads (Y_: sigmoid, tanh, exp)
    row              R_      a row value: a reduction over the features, or an      (T, B)       forward
                             op on such values (sum, max; log of a sum)
    nd               N_      an nd value, whole, at every step                      (T, ...)     forward
    grad_out         G       dL/d(new states), all states side by side              (T, B, Σw)   the vjp
    grad_x           dxs     dL/dx(t)                                               (T, B, I)    backward
    grad_hoist       dXA_    dL/d(hoisted product), per step: its GEMMs after it    (T, B, w)    backward
    grad_rec         dA_     dL/d(in-loop product), per step: the weight's GEMM     (T, B, w)    backward
    grad_engine      dP_     dL/d(parameter or engine value), summed over steps     its own      backward
    grad_states      DS_     dL/d(state at step t), for RunResult.states' .grad     (T, B, w)    backward
    grad_state_ew    ES_     dL/d(state input) from the fused ops, by parity        (2, B, w)    backward
    grad_state_mm    MS_     dL/d(state input) from a product's left operand        (2, B, w)    backward
    grad_cross       EV_     dL/d(a value a later phase read), within a step        (B, w)       backward
    grad_left        MV_     dL/d(a product's computed left operand), within a step (B, w)       backward
    grad_row         dR_     dL/d(a row value), per step, accumulated by its readers (T, B)      backward
    grad_nd          dN_     dL/d(an nd value) within a step, accumulated by its    (...)        backward
                             readers, cleared by the value's own reverse sweep
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    prefix: str
    zeroed: bool = False   # backward arrays read before written, or accumulated: zeroed per call

    @property
    def grad(self):
        return self.name.startswith("grad")

    @property
    def filled_by_call(self):
        """Whether the call fills it from engine values before the forward kernel runs."""
        return not self.grad and self.name not in ("rec", "stored", "row", "nd")

    @property
    def forward_own(self):
        """Whether the call allocates it, empty, for the forward kernel to write."""
        return self.name in ("state", "rec", "stored", "row", "nd")


KINDS = {k.name: k for k in (
    Kind("x", "xs"), Kind("state", "S_"), Kind("hoist", "XA_"), Kind("hoist_left", "XL_"),
    Kind("hoist_weight", "WX_"), Kind("rec", "A_"),
    Kind("rec_weight", "W_"), Kind("rec_weight_t", "WT_"), Kind("engine", "P_"), Kind("stored", "V_"),
    Kind("grad_out", "G"), Kind("grad_x", "dxs"), Kind("grad_hoist", "dXA_"), Kind("grad_rec", "dA_"),
    Kind("grad_engine", "dP_", zeroed=True), Kind("grad_states", "DS_"),
    Kind("grad_state_ew", "ES_", zeroed=True), Kind("grad_state_mm", "MS_", zeroed=True),
    Kind("grad_cross", "EV_"), Kind("grad_left", "MV_"), Kind("row", "R_"), Kind("grad_row", "dR_", zeroed=True),
    Kind("nd", "N_"), Kind("grad_nd", "dN_", zeroed=True),
)}
STORED_OUTPUT = "Y_"   # a stored value only the backward reads (the kind is "stored" either way)


def name(kind, what=""):
    """The name of the array of `kind` for `what` (a node's identifier or a state's name)."""
    return KINDS[kind].prefix + what
