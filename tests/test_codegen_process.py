"""The kernels across processes: Numba's disk cache, and the generated code with the JIT off."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # compiles kernels in subprocesses


ROOT = Path(__file__).resolve().parents[1]

TINY_RUN = """
import json, numpy as np, rnn
from minigrad import Tensor
from rnn.kernels.binding import prepare
cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
xs = Tensor(np.random.default_rng(1).standard_normal((4, 2, 2)), requires_grad=True)
r = rnn.run(cell, xs, backend="numba")
r.outputs.sum().backward()
mod = prepare(cell, 2).module
print(json.dumps({k: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
                  for k, f in (("forward", mod.forward), ("backward", mod.backward))}))
"""


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_second_process_loads_compiled_kernels_from_disk(tmp_path):
    first = json.loads(run_python(TINY_RUN, MINIGRAD_CACHE=str(tmp_path)).splitlines()[-1])
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert any(f.endswith(".py") for f in files) and any(f.endswith(".nbi") for f in files)
    assert first["forward"][1] == 1 and first["backward"][1] == 1          # compiled once each
    second = json.loads(run_python(TINY_RUN, MINIGRAD_CACHE=str(tmp_path)).splitlines()[-1])
    assert second == {"forward": [1, 0], "backward": [1, 0]}               # loaded, not compiled
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == files


@pytest.mark.parametrize("test", ["test_matches_unfolded_dag", "test_every_fused_op_matches"])
def test_generated_code_runs_without_the_jit(test, tmp_path):
    """NUMBA_DISABLE_JIT=1: the kernels run as Python, so coverage sees every generated path."""
    run_python(f"import sys, pytest; sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', "
               f"'tests/test_codegen.py::{test}', '-k', 'float64 and (LSTM or GRU or Odd or every)']))",
               NUMBA_DISABLE_JIT="1", MINIGRAD_CACHE=str(tmp_path), HYPOTHESIS_PROFILE="ci")


SOURCES = """
import hashlib, sys, numpy as np
sys.path.insert(0, "tests")
from rnn import kernel_source
from test_codegen import BUILTIN, CUSTOM
for cls in BUILTIN + CUSTOM:
    print(cls.__name__, hashlib.sha256(kernel_source(cls(4, 4), 2).encode()).hexdigest())
"""


def test_generated_source_is_the_same_in_every_process(tmp_path):
    """The cached module is named by the hash of its source: a source that varied with the
    process's string hashing (PYTHONHASHSEED) would be compiled anew by every process."""
    seen = {run_python(SOURCES, PYTHONHASHSEED=seed, MINIGRAD_CACHE=str(tmp_path / seed))
            for seed in ("1", "2", "3")}
    assert len(seen) == 1, seen
