"""min-char-rnn's training step by hand: the reference bench_charlm.py times and
tests/test_trainer_numerics.py holds the trainer to.

An Elman char-RNN with a linear head on one-hot characters, batch 1: forward, BPTT written out, the
joint-norm clip, Adagrad — NumPy only, nothing fused.  The loss is the mean over the window, and the
state carries over from window to window, reset where the text starts again.
"""
import numpy as np


def hand_written_step(weights, ids, seq_len, clip, lr, eps):
    """step() -> the mean loss of the next window, training a copy of `weights` (weight_ih, weight_hh,
    bias_ih, bias_hh, head weight, head bias) on `ids` window by window."""
    params = [w.copy() for w in weights]
    U, W, bi, bh, V, c = params
    sums = [np.zeros_like(p) for p in params]
    windows = (len(ids) - 1) // seq_len
    carry = {"h": None, "step": 0}

    def step():
        s = carry["step"]
        pos = (s % windows) * seq_len
        xs, ys = ids[pos:pos + seq_len], ids[pos + 1:pos + seq_len + 1]
        hs = {-1: np.zeros(W.shape[0]) if s % windows == 0 else carry["h"]}
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
            do /= seq_len                        # the loss is the mean over the window
            dV += np.outer(do, hs[t])
            dc += do
            da = (1 - hs[t] * hs[t]) * (V.T @ do + dnext)
            dbi += da
            dU[:, xs[t]] += da
            dW += np.outer(da, hs[t - 1])
            dnext = W.T @ da
        dbh += dbi
        norm = np.sqrt(sum(float((g * g).sum()) for g in grads))
        if norm > clip:
            for g in grads:
                g *= clip / (norm + 1e-6)
        for p, g, m in zip(params, grads, sums):
            m += g * g
            p -= lr * g / (np.sqrt(m) + eps)
        carry["h"], carry["step"] = hs[seq_len - 1], s + 1
        return loss / seq_len
    return step
