"""A teacher-forced y(t−1) in the kernels: known before the loop (y0, then the targets), it is read beside
x(t) as one step input.  Outputs, losses, what was fed and every gradient (parameters, xs, y0, the
encoder's outputs) against the explicit graph — float64 to 1e-10, float32 to 1e-4."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from rnn.kernels import UnsupportedCellError

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
PAD, BOS, EOS = 0, 1, 2


def seq2seq(mode, score, H, rng, dtype=np.float64):
    V_in, V_out = 6, 7
    enc = rnn.GRUCell(V_in, H, rng=rng, dtype=dtype)
    extra = {"initial": 0, "input": H, "both": H, "attention": H}[mode]
    dec = rnn.GRUCell(V_out + extra, H, rng=rng, dtype=dtype)
    return rnn.Seq2Seq(enc, dec, V_out, context=mode, attention=score, pad=PAD, bos=BOS, eos=EOS, rng=rng)


def decoder_run(m, src, tgt, backend):
    """The decoder's teacher-forced run as Seq2Seq.forward makes it, on `backend`."""
    m.zero_grad()
    enc, n = m.encode(src)
    T, B = tgt.shape
    dec = rnn.run(m.step, None, steps=T, batch=B, targets=tgt, feed="teacher", y0=m._y0(B), reduction="sum",
                  backend=backend, **m._conditioning(enc, n))
    assert dec.backend == backend
    dec.loss.backward()
    return [dec.loss.data, dec.outputs.data, dec.fed.data] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("mode, score", [("initial", "additive"), ("input", "additive"), ("both", "additive"),
                                         ("attention", "additive")])   # dot scores: tests/test_kernel_nd.py
def test_every_seq2seq_decoder_runs_teacher_forced_in_the_kernels(mode, score):
    rng = np.random.default_rng(3)
    m = seq2seq(mode, score, 4, rng)
    src = np.array([[3, 4, 5], [4, 5, PAD], [5, PAD, PAD]])   # padded sources and targets
    tgt = np.array([[3, 4, 5], [6, EOS, 4], [EOS, PAD, EOS], [PAD, PAD, PAD]])
    for want, got in zip(decoder_run(m, src, tgt, "graph"), decoder_run(m, src, tgt, "numba")):
        np.testing.assert_allclose(got, want, **TOL[np.float64])


def output_recurrent(T, B, I, H, O, classes, dtype, seed, backend):
    rng = np.random.default_rng(seed)
    cell = rnn.OutputRecurrentCell(I, H, O, classes=classes, rng=rng, dtype=dtype)
    xs = mg.Tensor(rng.standard_normal((T, B, I)).astype(dtype), requires_grad=True)
    y0 = mg.Tensor(rng.standard_normal((B, O)).astype(dtype), requires_grad=True)
    # real targets that require grad: fed back and scored, they get their gradient along both paths
    ys = (rng.integers(0, O, (T, B)) if classes
          else mg.Tensor(rng.standard_normal((T, B, O)).astype(dtype), requires_grad=True))
    r = rnn.run(cell, xs, targets=ys, feed="teacher", y0=y0, backend=backend)
    assert r.backend == backend
    r.loss.backward()
    return ([r.loss.data, r.outputs.data, r.fed.data, xs.grad, y0.grad] + [p.grad for p in cell.parameters()]
            + ([] if classes else [ys.grad]))


@settings(max_examples=6)
@given(T=st.integers(1, 5), B=st.integers(1, 3), I=st.integers(1, 3), H=st.integers(1, 4), O=st.integers(1, 4),
       classes=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_output_to_hidden_recurrence_teacher_forced_equals_the_graph(T, B, I, H, O, classes, dtype, seed):
    """Fig. 10.6 left: x(t) and y(t−1) side by side in one kernel input; xs and y0 get their gradients."""
    got = output_recurrent(T, B, I, H, O, classes, dtype, seed, "numba")
    for want, have in zip(output_recurrent(T, B, I, H, O, classes, dtype, seed, "graph"), got):
        np.testing.assert_allclose(have, want, **TOL[dtype])


def test_free_running_feeds_fall_back_with_the_reason():
    cell = rnn.OutputRecurrentCell(2, 3, 2, rng=np.random.default_rng(0))
    xs = np.ones((3, 1, 2))
    with pytest.raises(UnsupportedCellError, match=r"own output.*teacher forcing is"):
        rnn.run(cell, xs, feed="output", backend="numba")
    with pytest.warns(UserWarning, match="own output"):
        r = rnn.run(cell, xs, feed="output")
    assert r.backend == "graph"
