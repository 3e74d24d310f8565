"""`minigrad gradcheck`: a property-based gradient check of a cell over random sizes, states and inputs."""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
import rnn
from rnn.rolled import as_tuple

from .charlm import CELLS
from .errors import UsageError


def load_cell_class(spec):
    """A built-in cell name, or module:Class naming a subclass of rnn.Cell importable from here."""
    if spec in CELLS:
        return CELLS[spec]
    module, _, name = spec.partition(":")
    if not module or not name:
        raise UsageError(f"--cell must be one of {', '.join(CELLS)} or module:Class, got {spec!r}")
    sys.path.insert(0, os.getcwd())  # let `my_cells:Leaky` find my_cells.py in the current folder
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"cannot load cell {spec!r}: {e}") from None
    except (Exception, SystemExit) as e:  # the user's module is running code of its own: any error can come out
        raise UsageError(f"cannot load cell {spec!r}: importing {module} raised {type(e).__name__}: {e}") from None
    try:
        cls = getattr(mod, name)
    except AttributeError as e:
        raise UsageError(f"cannot load cell {spec!r}: {e}") from None
    if not (inspect.isclass(cls) and issubclass(cls, rnn.Cell)):
        raise UsageError(f"{spec} is not a subclass of rnn.Cell")
    return cls


def make_cell(cls, input_size, hidden_size, seed):
    try:
        return cls(input_size, hidden_size, rng=np.random.default_rng(seed))
    except TypeError:  # a user's cell need not take rng=
        np.random.seed(seed)
        return cls(input_size, hidden_size)


@dataclass
class Report:
    cell: str
    passed: int = 0
    failed: list = field(default_factory=list)
    worst: float = 0.0

    @property
    def ok(self):
        return not self.failed and self.passed > 0

    def summary(self):
        lines = [f"gradcheck {self.cell}: {self.passed} of {self.passed + len(self.failed)} cases passed; "
                 f"worst relative error {self.worst:.2e}"]
        lines += [f"  FAILED {case}: {msg}" for case, msg in self.failed[:5]]
        return "\n".join(lines)


def check_cell(cls, examples=20, backend="graph", seed=0):
    """Check d(outputs, final state)/d(xs, state0, parameters) against central differences."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    report = Report(cls.__name__)
    sizes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                      st.integers(0, 2**31 - 1))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(sizes)
    def case(size):
        T, B, I, H, s = size
        rng = np.random.default_rng(seed + s)
        cell = make_cell(cls, I, H, s)
        xs = mg.Tensor(rng.uniform(-1, 1, (T, B, I)), requires_grad=True)
        state0 = tuple(mg.Tensor(rng.uniform(-0.5, 0.5, x.shape), requires_grad=True)
                       for x in as_tuple(cell.initial_state(B)))

        def fn(xs, *rest):
            res = rnn.run(cell, xs, rest[:len(state0)] if len(state0) > 1 else rest[0], backend=backend)
            return (res.outputs, *as_tuple(res.state))

        result = mg.gradcheck(fn, [xs, *state0, *cell.parameters()], raise_exception=False)
        report.worst = max(report.worst, result.worst_rel_error)
        if result.ok:
            report.passed += 1
        else:
            i, idx, ana, num = result.failures[0]
            report.failed.append(((T, B, I, H), f"input {i} element {idx}: analytic {ana:.6g}, numerical {num:.6g}"))

    try:
        case()
    except Exception as e:  # hypothesis re-raises the failing case; it is already in the report
        if not report.failed:
            report.failed.append(("error", f"{type(e).__name__}: {e}"))
    return report
