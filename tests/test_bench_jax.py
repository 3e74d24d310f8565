"""The JAX column of `minigrad bench` times the computation ours does: the same loss and gradients."""
import time

import numpy as np
import pytest

import rnn
from minigrad import Tensor
from minigrad_cli import bench
from minigrad_cli.bench import CELLS, jax_grad, jax_loss, jax_weights


def _table(capsys, argv):
    """The machine line, and the table row's value under each label (values are right-aligned under
    their labels)."""
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("cell"))
    row = next(line for line in lines if line.startswith(argv[argv.index("--cells") + 1]))

    def column(label):
        end = header.index(label) + len(label)
        return row[end - 9:end].strip()
    return lines[0], column


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_jax_loss_and_gradients_equal_ours_in_float64(kind):
    size = (7, 3, 4, 5)  # T, B, I, H: distinct, so a transposed weight or a swapped axis fails to run
    params, xs = jax_weights(kind, size, np.float64)
    cell = CELLS[kind](size[2], size[3], rng=np.random.default_rng(0), dtype=np.float64)
    for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
        np.testing.assert_array_equal(getattr(cell, name).data, p)  # the bench hands JAX our weights
    x = Tensor(xs.copy(), requires_grad=True)
    ours = rnn.run(cell, x, backend="numba").outputs.sum()
    ours.backward()

    jax = pytest.importorskip("jax")
    grad = jax_grad(kind, np.float64)  # turns on jax_enable_x64
    loss = jax.jit(jax_loss(kind))(params, xs)
    (g_ih, g_hh, g_bih, g_bhh), g_xs = grad(params, xs)
    assert loss.dtype == np.float64 and g_hh.dtype == np.float64
    np.testing.assert_allclose(float(loss), float(ours.data), rtol=1e-10, atol=0)
    for got, want in [(g_ih, cell.weight_ih), (g_hh, cell.weight_hh), (g_bih, cell.bias_ih),
                      (g_bhh, cell.bias_hh), (g_xs, x)]:
        np.testing.assert_allclose(np.asarray(got), want.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_bench_table_has_a_jax_time_and_ratio(capsys):
    pytest.importorskip("jax")
    machine, column = _table(capsys, ["--cells", "gru", "--sizes", "3,1,2,2", "--dtypes", "float64", "--no-graph"])
    assert "jax 0." in machine or "jax 1." in machine  # the version JAX was timed with
    assert float(column("numba ms")) > 0 and float(column("jax ms")) > 0 and float(column("jax/numba")) > 0


def test_without_jax_its_columns_are_blank(capsys, monkeypatch):
    monkeypatch.setattr(bench, "HAVE_JAX", False)
    machine, column = _table(capsys, ["--cells", "elman", "--sizes", "3,1,2,2", "--dtypes", "float64", "--no-graph"])
    assert "jax not installed" in machine
    assert float(column("numba ms")) > 0 and column("jax ms") == column("jax/numba") == ""


def test_a_block_does_not_count_the_calls_of_its_first_moments():
    """The library timed before may still spin on the cores: a block's calls in its first SETTLE
    seconds are made but not timed, then at least `reps` are."""
    calls = []

    def fn():
        calls.append(time.perf_counter())
        time.sleep(0.002)

    start = time.perf_counter()
    ts = bench.timed_block(fn, reps=3, budget=0.0)
    assert len(ts) == 3
    untimed = calls[:len(calls) - len(ts)]
    assert len(untimed) >= 2 and untimed[-1] - start < bench.SETTLE <= calls[-len(ts)] - start
