"""No silent wrong numbers: edited inputs, stale kernels, a damaged kernel cache."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad.nn import Parameter
from rnn.kernels import binding as fused, cache as kernel_cache
from rnn.kernels.ir import KernelError


# --- a value an op recorded, changed before backward() -------------------------------------

def test_editing_a_recorded_leaf_is_refused_at_backward():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    y = (x.tanh() * x).sum()
    x.data[0] = 100
    with pytest.raises(RuntimeError, match=r"'x' of shape \(3,\).*(tanh|mul).*changed in place"):
        y.backward()
    assert x.grad is None  # refused before any gradient was written


def test_a_write_through_an_array_taken_before_the_op_is_caught_too():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    held = x.data
    y = (x * x).sum()
    held[1] = -5.0
    with pytest.raises(RuntimeError, match="mul"):
        y.backward()


def test_reading_or_restoring_a_recorded_leaf_is_not_a_change():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    print(x.data.sum())
    x.data[0] = 7.0
    x.data[0] = 1.0  # put back: the values the op saw
    y.backward()
    assert np.allclose(x.grad, [2.0, 4.0, 6.0])


def test_nan_values_that_stay_nan_are_unchanged():
    x = mg.tensor([np.nan, 1.0], requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_a_change_of_sign_of_zero_or_of_one_bit_is_a_change(dtype):
    """Compared bit for bit: 0.0 -> -0.0 is equal as a number but is a change (1 / x flips to -inf), and so is
    any one bit of any element, in every dtype a leaf can have."""
    x = mg.tensor(np.array([0.0, 1.0, 0.0], dtype=dtype))
    w = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (w * x).sum()  # mul records x, a leaf of that dtype, beside w
    held = x.data
    if dtype.startswith("float"):
        held[2] = -0.0
    else:
        held.view(np.uint8)[-1] ^= 1
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()


def test_writes_that_are_meant_keep_working():
    rng = np.random.default_rng(0)
    lin = mg.nn.Linear(3, 2, rng=rng)
    opt = mg.optim.Adam(lin.parameters(), lr=0.1)
    x = mg.tensor(rng.normal(size=(4, 3)))
    before = lin.weight.data.copy()
    for _ in range(3):  # forward, backward, in-place update, again: the next forward records the new values
        loss = (lin(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not np.allclose(before, lin.weight.data)
    lin.weight.data[:] = 0.0                      # a user's own initialisation
    lin.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})
    loss = lin(x).sum()
    lin.weight.data -= 0.1 * np.ones((2, 3))      # ...but not between forward and backward
    with pytest.raises(RuntimeError, match="changed in place"):
        loss.backward()


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    w = Parameter(np.array([1.0, -2.0]))
    opt = mg.optim.SGD([w], lr=0.5)
    loss = (w * w).sum()
    loss.backward()
    opt.step()
    loss2 = (w * w).sum()
    w.grad = np.ones(2)
    opt.step()
    with pytest.raises(RuntimeError, match="changed in place"):
        loss2.backward()


def test_a_computed_value_is_read_only_while_recorded():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x.tanh()
    with pytest.raises(ValueError, match="read-only"):
        h.data[0] = 5.0
    with mg.no_grad():  # nothing recorded: an ordinary writable array
        z = x.tanh()
    z.data[0] = 5.0
    assert z.data[0] == 5.0


def test_stop_gradient_does_not_freeze_its_input():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = mg.stop_gradient(x) * x
    x.data[0] = 3.0  # x stays writable; the change is caught at backward
    with pytest.raises(RuntimeError):
        y.sum().backward()


def test_gradcheck_still_perturbs_its_inputs_in_place():
    w = mg.tensor(np.array([0.3, -0.7]), requires_grad=True)
    assert mg.gradcheck(lambda w: (w.tanh() * w).sum(), [w])


@pytest.mark.parametrize("backend", ["graph", "numba"])
def test_editing_the_inputs_of_a_recurrent_run_before_backward_is_refused(backend):
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    xs = mg.tensor(np.random.default_rng(1).normal(size=(4, 2, 2)), requires_grad=True)
    res = rnn.run(cell, xs, backend=backend)
    cell.weight_hh.data *= 2.0
    with pytest.raises(RuntimeError, match="changed in place"):
        res.outputs.sum().backward()
    res = rnn.run(cell, xs, backend=backend)
    xs.data[0, 0, 0] += 1.0
    with pytest.raises(RuntimeError, match="changed in place"):
        res.outputs.sum().backward()


def test_a_weight_transpose_kept_between_kernel_calls_is_never_stale():
    """The kernels read W_hh.T; it is kept from call to call while W_hh holds the bits of the engine's
    recorded copy of it.  A write through an array held from before, which no version count sees,
    makes the next forward transpose again; so does undoing it (the kept one was made from other bits)."""
    cell = rnn.ElmanCell(3, 4, rng=np.random.default_rng(0))
    xs = mg.tensor(np.random.default_rng(1).normal(size=(5, 2, 3)))
    held = cell.weight_hh.data
    prep = fused.prepare(cell, 2)

    def agree():
        out = rnn.run(cell, xs, backend="numba").outputs.data
        np.testing.assert_allclose(out, rnn.run(cell, xs, backend="graph").outputs.data, rtol=1e-12, atol=1e-14)
        return out, {name: id(t) for name, (_, t) in prep.transposes.items()}
    agree()
    first, kept = agree()
    assert kept and agree()[1] == kept  # unchanged weights: the same transpose, not a new one
    held *= 2.0
    doubled, _ = agree()
    assert not np.allclose(doubled, first)
    held /= 2.0
    np.testing.assert_array_equal(agree()[0], first)


# --- what a step reads from its cell, changed between two runs --------------------------------

class Reader(rnn.Cell):
    """A step that reads an array, a constant tensor, a function, a list and a class attribute."""
    alpha = 0.5

    def __init__(self, input_size, hidden_size, rng=None):
        super().__init__(input_size, hidden_size)
        self.W, self.U = self._init(rng, (hidden_size, input_size), (hidden_size, hidden_size))
        self.scale = np.ones(hidden_size)
        self.mask = mg.tensor(np.ones(hidden_size))
        self.act = mg.tanh
        self.coefs = [1.0, 1.0]

    def step(self, x, h):
        a = self.act(x @ self.W.T + h @ self.U.T) * self.scale * (self.scale * 2.0)
        return (self.coefs[0] * a * self.mask + self.coefs[1] * self.alpha * h)


def _agree(cell, xs):
    """Outputs and gradients of the default backend (which must be the kernels) against the DAG."""
    got = []
    for backend in ("auto", "graph"):
        cell.zero_grad()
        res = rnn.run(cell, xs, backend=backend)
        res.outputs.sum().backward()
        got.append((res.backend, res.outputs.data.copy(), [p.grad.copy() for p in cell.parameters()]))
    (b0, o0, g0), (_, o1, g1) = got
    assert b0 == "numba"
    assert np.allclose(o0, o1, rtol=1e-10, atol=1e-12)
    assert all(np.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(g0, g1))
    return o0


H = 3


@pytest.mark.parametrize("change", [
    lambda c: setattr(c, "scale", np.full(H, 2.0)),                 # a new array
    lambda c: c.scale.__setitem__(slice(None), 3.0),                 # the same array, edited in place
    lambda c: setattr(c, "mask", mg.tensor(np.array([1.0, 0.0, 1.0]))),  # a new constant tensor (a dropout mask)
    lambda c: setattr(c, "act", mg.sigmoid),                         # another function
    lambda c: c.coefs.__setitem__(0, 2.5),                           # a list, edited in place
    lambda c: setattr(type(c), "alpha", 0.25),                       # a class attribute
], ids=["new-array", "array-in-place", "new-mask", "function", "list-in-place", "class-attribute"])
def test_a_changed_value_the_step_reads_is_traced_again(change, monkeypatch):
    monkeypatch.setattr(Reader, "alpha", 0.5)
    cell = Reader(2, H, rng=np.random.default_rng(0))
    xs = mg.tensor(np.random.default_rng(1).normal(size=(5, 2, 2)))
    before = _agree(cell, xs)
    change(cell)
    after = _agree(cell, xs)
    assert not np.allclose(before, after)  # the change mattered, and both backends saw it


def test_a_step_that_reads_parameter_values_outside_the_engine_is_refused():
    class Peeks(rnn.Cell):
        def __init__(self):
            super().__init__(2, 2)
            self.W = Parameter(np.eye(2))

        def step(self, x, h):
            return (x @ self.W.T + h * self.W.data.sum()).tanh()   # the sum is frozen at trace time

    with pytest.raises(ValueError, match="depends on the values"):
        rnn.run(Peeks(), np.ones((3, 1, 2)))


# --- the kernel cache ---------------------------------------------------------------------

def _fresh_run(cache, code="", backend="auto"):
    """A new process (so nothing is in memory) running a small LSTM with the cache at `cache`."""
    script = textwrap.dedent(f"""
        import numpy as np, rnn, minigrad as mg
        cell = rnn.LSTMCell(3, 4, rng=np.random.default_rng(0))
        xs = mg.tensor(np.linspace(-1, 1, 30).reshape(5, 2, 3), requires_grad=True)
        {code}
        r = rnn.run(cell, xs, backend={backend!r})
        r.outputs.sum().backward()
        print(r.backend, repr(float(r.outputs.data.sum())), repr(float(xs.grad.sum())), r.fallback)
    """)
    env = {**os.environ, "MINIGRAD_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_damaged_cache_is_regenerated_not_trusted(tmp_path):
    good = _fresh_run(tmp_path)
    assert good.returncode == 0 and good.stdout.startswith("numba"), good.stderr
    (kernel,) = tmp_path.glob("rnn_kernel_*.py")
    text = kernel.read_text()
    kernel.write_text(text[: len(text) // 3])                  # truncated: it still parses
    for f in (tmp_path / "__pycache__").glob("*backward*.nbc"):
        f.write_bytes(f.read_bytes()[:100])                     # Numba's compiled code, damaged
    again = _fresh_run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == good.stdout                          # same numbers, from the kernels
    assert kernel.read_text() == text                           # the file was written again
    (tmp_path / "__pycache__").mkdir(exist_ok=True)
    for f in (tmp_path / "__pycache__").glob("*forward*.nbi"):
        f.write_bytes(b"not an index")
    assert _fresh_run(tmp_path).stdout == good.stdout


def test_a_foreign_file_under_a_kernel_name_is_never_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_CACHE", str(tmp_path))
    source = "X = 1\n"
    path = tmp_path / f"rnn_kernel_{kernel_cache.source_hash(source)}.py"
    path.write_text("raise SystemExit('foreign code ran')\n")
    mod = kernel_cache.load(source)
    assert mod.X == 1 and path.read_text() == source


@pytest.mark.parametrize("kind", ["a-file", "unwritable"])
def test_an_unusable_cache_folder_falls_back_with_the_reason(tmp_path, monkeypatch, kind):
    if kind == "a-file":
        cache = tmp_path / "cache"
        cache.write_text("mine")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        cache = tmp_path / "ro"
        cache.mkdir(mode=0o500)
    monkeypatch.setenv("MINIGRAD_CACHE", str(cache))
    monkeypatch.setattr(kernel_cache, "_MODULES", {})
    cell = rnn.GRUCell(2, 3, rng=np.random.default_rng(5))   # a fresh cell: nothing prepared for it yet
    xs = np.ones((3, 1, 2))
    res = rnn.run(cell, xs)
    assert res.backend == "graph" and "MINIGRAD_CACHE" in res.fallback and str(cache) in res.fallback
    with pytest.raises(KernelError, match="MINIGRAD_CACHE"):
        rnn.run(cell, xs, backend="numba")
    if kind == "a-file":
        assert cache.read_text() == "mine"


def test_mixed_dtypes_fall_back_rather_than_fail_in_the_kernel():
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(0))
    cell.weight_hh = Parameter(cell.weight_hh.data.astype(np.float32))
    res = rnn.run(cell, np.ones((3, 1, 2)))
    assert res.backend == "graph" and "float32" in res.fallback
    with pytest.raises(rnn.kernels.ir.UnsupportedCellError, match="float32"):
        rnn.run(cell, np.ones((3, 1, 2)), backend="numba")


def test_a_kernel_that_fails_to_compile_falls_back(monkeypatch):
    cell = rnn.ElmanCell(2, 3, rng=np.random.default_rng(1))
    prep = fused.prepare(cell, 1)

    class Broken:
        __file__ = prep.module.__file__

        def forward(self, *a):
            raise RuntimeError("boom")

    monkeypatch.setattr(prep, "module", Broken())
    monkeypatch.setattr(kernel_cache, "reload_clean", lambda m: m)
    res = rnn.run(cell, np.ones((3, 1, 2)))
    assert res.backend == "graph" and "boom" in res.fallback


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "int8"])
@pytest.mark.parametrize("where", [0, 4097, -1])
@pytest.mark.parametrize("compiled", [True, False])
def test_a_large_leaf_changed_in_one_bit_anywhere_is_caught(dtype, where, compiled, monkeypatch):
    """Past 32 kB a leaf is compared in a compiled loop (NumPy's == without Numba): any one bit, at the
    start, in the middle, at the end, is a change; a leaf left alone, NaNs and all, is not."""
    if not compiled:
        from minigrad import fused
        monkeypatch.setattr(fused, "run", lambda *args: False)
    n = 40000  # 40 kB of int8 and up
    x = mg.tensor(np.full(n, np.nan if dtype.startswith("float") else 3).astype(dtype))
    w = mg.tensor(np.ones(n), requires_grad=True)
    (w * x).sum().backward()                                # nothing changed: fine
    y = (w * x).sum()
    x.data.view(np.uint8)[where * x.dtype.itemsize] ^= 1
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()
