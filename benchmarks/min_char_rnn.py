"""min-char-rnn's training step by hand: the reference bench_charlm.py times and
tests/test_trainer_numerics.py holds the trainer to.

An Elman char-RNN with a linear head on one-hot characters, batch 1: forward, BPTT written out, the
joint-norm clip, Adagrad — NumPy only, nothing fused.  The loss is the mean over the window, and the
state carries over from window to window, reset where the text starts again.

`fused_step` is the same training step as one Numba function: what a step costs with no Python
between its parts (the per-step products on BLAS, the read-out and the weight gradients as GEMMs
over the window, the rest in compiled loops) — the floor that a training step compiled whole could
reach, which bench_charlm.py prints beside the others.
"""
import math

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


def fused_step(weights, ids, seq_len, clip, lr, eps):
    """hand_written_step's training, each step one call of the compiled `_fused` (numba is imported here,
    so the NumPy reference above needs none)."""
    import numba
    global _fused
    if not isinstance(_fused, numba.core.dispatcher.Dispatcher):
        _fused = numba.njit(cache=True, error_model="numpy")(_fused)
    params = [w.copy() for w in weights]
    sums = [np.zeros_like(p) for p in params]
    grads = [np.zeros_like(p) for p in params]
    H, V = params[1].shape[0], params[4].shape[0]
    hs, ps = np.zeros((seq_len + 1, H)), np.zeros((seq_len, V))
    windows = (len(ids) - 1) // seq_len
    carry = {"h": np.zeros(H), "step": 0}

    def step():
        s = carry["step"]
        pos = (s % windows) * seq_len
        h0 = np.zeros(H) if s % windows == 0 else carry["h"]
        loss = _fused(*params, *sums, *grads, ids[pos:pos + seq_len], ids[pos + 1:pos + seq_len + 1], h0, hs, ps,
                      clip, lr, eps)
        carry["h"], carry["step"] = hs[seq_len].copy(), s + 1
        return loss
    return step


def _fused(U, W, bi, bh, V, c, sU, sW, sbi, sbh, sV, sc, dU, dW, dbi, dbh, dV, dc, xs, ys, h0, hs, ps, clip, lr, eps):
    T, H, K = xs.shape[0], W.shape[0], V.shape[0]
    hs[0] = h0
    b, WT = bi + bh, np.ascontiguousarray(W.T)
    for t in range(T):                                   # h(t) = tanh(U x(t) + W h(t-1) + b)
        a = np.dot(hs[t], WT)
        for j in range(H):
            hs[t + 1, j] = math.tanh(a[j] + U[j, xs[t]] + b[j])
    O = np.dot(hs[1:], V.T) + c                          # o(t) for every t: one GEMM
    loss = 0.0
    for t in range(T):                                   # softmax, the loss, dL/do = (p - onehot(y)) / T
        m = O[t].max()
        e = np.exp(O[t] - m)
        ps[t] = e / e.sum()
        loss -= math.log(ps[t, ys[t]])
        ps[t, ys[t]] -= 1.0
    ps /= T
    dV[:] = np.dot(ps.T, hs[1:])
    dc[:] = ps.sum(axis=0)
    dH = np.dot(ps, V)                                   # dL/dh(t) from o(t), every t
    DA = np.empty((T, H))
    dnext = np.zeros(H)
    for t in range(T - 1, -1, -1):                       # BPTT: dL/da(t), back along the chain
        for j in range(H):
            DA[t, j] = (1.0 - hs[t + 1, j] * hs[t + 1, j]) * (dH[t, j] + dnext[j])
        dnext = np.dot(DA[t], W)
    dW[:] = np.dot(DA.T, hs[:T])
    dU[:] = 0.0
    for t in range(T):
        dU[:, xs[t]] += DA[t]
    dbi[:] = DA.sum(axis=0)
    dbh[:] = dbi
    norm = 0.0
    for g in (dU.ravel(), dW.ravel(), dbi, dbh, dV.ravel(), dc):
        norm += np.dot(g, g)
    norm = math.sqrt(norm)
    coef = clip / (norm + 1e-6) if norm > clip else 1.0
    for p, s, g in ((U.ravel(), sU.ravel(), dU.ravel()), (W.ravel(), sW.ravel(), dW.ravel()), (bi, sbi, dbi),
                    (bh, sbh, dbh), (V.ravel(), sV.ravel(), dV.ravel()), (c, sc, dc)):
        for i in range(p.size):                          # Adagrad
            gi = g[i] * coef
            s[i] += gi * gi
            p[i] -= lr * gi / (math.sqrt(s[i]) + eps)
    return loss / T
