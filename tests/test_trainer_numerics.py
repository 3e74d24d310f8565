"""The char-LM trainer computes what min-char-rnn's hand-written loop computes, to rounding.

`minigrad train`'s step is made fast by fusing (softmax_cross_entropy, the compiled clip and
Adagrad, the rnn kernels); the reference here fuses nothing: forward, BPTT by hand, the joint-norm
clip and Adagrad in NumPy, from the same initial weights.  Each step's loss must agree.
"""
import numpy as np
import pytest

import minigrad as mg
from minigrad_cli.charlm import CharModel, Trainer


def numpy_steps(weights, ids, seq_len, clip, lr, eps, steps):
    """Losses of `steps` training steps of an Elman char-RNN with a linear head, by hand (batch 1)."""
    U, W, bi, bh, V, c = params = [w.copy() for w in weights]
    sums = [np.zeros_like(p) for p in params]
    windows = (len(ids) - 1) // seq_len
    h, losses = None, []
    for s in range(steps):
        pos = (s % windows) * seq_len
        xs, ys = ids[pos:pos + seq_len], ids[pos + 1:pos + seq_len + 1]
        hs = {-1: np.zeros(W.shape[0]) if s % windows == 0 else h}
        ps, loss = {}, 0.0
        for t in range(seq_len):
            hs[t] = np.tanh(U[:, xs[t]] + W @ hs[t - 1] + bi + bh)
            o = V @ hs[t] + c
            e = np.exp(o - o.max())
            ps[t] = e / e.sum()
            loss -= np.log(ps[t][ys[t]])
        dU, dW, dbi, dbh, dV, dc = grads = [np.zeros_like(p) for p in params]
        dnext = np.zeros(W.shape[0])
        for t in reversed(range(seq_len)):
            do = ps[t].copy()
            do[ys[t]] -= 1
            do /= seq_len
            dV += np.outer(do, hs[t])
            dc += do
            da = (1 - hs[t] ** 2) * (V.T @ do + dnext)
            dbi += da
            dU[:, xs[t]] += da
            dW += np.outer(da, hs[t - 1])
            dnext = W.T @ da
        dbh += dbi
        norm = np.sqrt(sum(float((g * g).sum()) for g in grads))
        for g in grads if norm > clip else ():
            g *= clip / (norm + 1e-6)
        for p, g, m in zip(params, grads, sums):
            m += g * g
            p -= lr * g / (np.sqrt(m) + eps)
        h = hs[seq_len - 1]
        losses.append(loss / seq_len)
    return losses


@pytest.mark.parametrize("clip", [0.5, 1e6])  # clipping every step, and never
@pytest.mark.parametrize("backend", ["auto", "graph"])
def test_the_trainer_step_is_min_char_rnn_s_loop(backend, clip):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 11, 200)
    model = CharModel(11, "elman", 16, 0, seed=1)
    weights = [p.data.copy() for p in model.parameters()]
    opt = mg.optim.Adagrad(model.parameters(), lr=0.1, eps=1e-8)
    trainer = Trainer(model, opt, ids, 9, 1, ("norm", clip), backend)
    got = [trainer.train_step() for _ in range(30)]  # past the end of the text: the state is reset once
    np.testing.assert_allclose(got, numpy_steps(weights, ids, 9, clip, 0.1, 1e-8, 30), rtol=1e-10, atol=0)
