"""What the step calls each value, for the comments of the generated kernels.

A node is called by its name where the step gave it one: a state read, h(t-1), or made, h; a
parameter (weight_hh); x(t); a value named with `.named("f")` (an LSTM's gates i, f, g, o).
Otherwise it is written as its op over its arguments' names: `x(t) @ weight_ih.T`,
`sigmoid(n12[:, 3W1:4W1])`, `f * c(t-1)`; an unnamed computed argument is written as its id,
which is the prefix of its variables in the kernel (n12_0, n12_1, ...), so a reader can follow
it.  Slices of a fused value are written in blocks of the phase's loop width (W1), as the kernel
computes them: n12[:, 3W1:4W1] is n12_3.
"""
from __future__ import annotations

import numpy as np

from .ir import last_axis_slice

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "power": "**"}


class Names:
    def __init__(self, plan):
        self.plan, self.nodes = plan, plan.nodes
        self.state_in = {sin: name for name, sin, _ in plan.states}
        self.state_out = {sout: name for name, _, sout in plan.states}
        self._text = {}

    def name(self, nid):
        """The step's own name for `nid`, or None."""
        n = self.nodes[nid]
        if nid in self.state_in:
            return f"{self.state_in[nid]}(t-1)"
        if n.kind == "x":
            return "x(t)"
        if n.kind == "step":
            return "t"
        if n.kind == "param":
            return self.plan.params.get(nid)
        if n.kind == "const" and n.value is not None and np.size(n.value) == 1:
            return f"{float(np.asarray(n.value).reshape(())):g}"
        if nid in self.state_out:
            return self.state_out[nid]
        if n.label and n.label != n.op and n.role == "op" and n.label.isidentifier():
            return n.label
        return None

    def arg(self, nid):
        """How an argument reads inside another node's text."""
        n = self.nodes[nid]
        got = self.name(nid)
        if got is not None:
            return got
        if n.kind in ("hoist", "rec", "pre") or n.op in ("transpose", "getitem", "copy"):
            text = self.text(nid)
            return f"({text})" if n.op in _INFIX and n.op != "matmul" else text
        return nid

    def text(self, nid):
        """`nid` written as its op over its arguments."""
        got = self._text.get(nid)
        if got is None:
            got = self._text[nid] = self._write(self.nodes[nid])
        return got

    def _write(self, n):
        args = [self.arg(a) for a in n.args]
        if n.op == "transpose" and len(args) == 1:
            return f"{args[0]}.T"
        if n.op in _INFIX and len(args) == 2:
            return f"{args[0]} {_INFIX[n.op]} {args[1]}"
        if n.op == "neg":
            return f"-{args[0]}"
        if n.op == "copy":
            return args[0]
        if n.op == "getitem":
            cut = last_axis_slice(n, self.nodes[n.args[0]].shape)
            if cut is None:
                return f"{args[0]}[{_index_text(n.attrs.get('index'))}]"
            phase = self.plan.loop_of.get(n.id)
            W = self.plan.phases[phase].width if phase is not None and phase < len(self.plan.phases) else 0
            if W and cut[0] % W == 0 and cut[1] % W == 0:
                w = f"W{phase}"
                return f"{args[0]}[:, {_times(cut[0] // W, w)}:{_times(cut[1] // W, w)}]"
            return f"{args[0]}[:, {cut[0]}:{cut[1]}]"
        if n.op == "concatenate":
            return f"concat([{', '.join(args)}])"
        return f"{n.op}({', '.join(args)})"

    def say(self, nid):
        """`nid` by its name, else as its text: for what an array holds."""
        return self.name(nid) or self.text(nid)

    def line(self, nid):
        """'name = text' for a computed node (or 'id = text' where the step did not name it)."""
        own = self.name(nid)
        return f"{own or nid} = {self.text(nid)}"


def _index_text(index):
    """An index as Python writes it: (slice(3, 7, None),) -> 3:7."""
    def one(i):
        if isinstance(i, slice):
            text = f"{'' if i.start is None else i.start}:{'' if i.stop is None else i.stop}"
            return text + (f":{i.step}" if i.step is not None else "")
        return "..." if i is Ellipsis else repr(i)
    return ", ".join(one(i) for i in (index if isinstance(index, tuple) else (index,)))


def _times(k, w):
    return "0" if k == 0 else w if k == 1 else f"{k}{w}"
