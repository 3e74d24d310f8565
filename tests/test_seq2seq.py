"""Encoder–decoder nets (Goodfellow et al. §10.4) and attention: the loss against a hand loop over the
same cells, padding that changes nothing, gradients against finite differences, decoding."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from rnn.rolled import as_tuple

PAD, BOS, EOS = 0, 1, 2


def onehot(tokens, n):
    return mg.tensor(np.eye(n)[tokens])


def make(mode, V_in, V_out, H, rng, attention="additive", encoder="gru"):
    if encoder == "bi":
        enc = rnn.Bidirectional(rnn.GRUCell(V_in, H, rng=rng), rnn.GRUCell(V_in, H, rng=rng))
        width = 2 * H
    else:
        enc, width = rnn.GRUCell(V_in, H, rng=rng), H
    extra = {"initial": 0, "input": H, "both": H, "attention": width}[mode]
    dec = rnn.GRUCell(V_out + extra, H, rng=rng)
    return rnn.Seq2Seq(enc, dec, V_out, context=mode, attention=attention, pad=PAD, bos=BOS, eos=EOS, rng=rng)


def hand_loss(m, src, tgt):
    """The module docstring's loop, step by step with the cells' own step methods (no rnn.run)."""
    enc, step, dec = m.encoder, m.step, m.step.decoder
    S, B = src.shape
    if isinstance(enc, rnn.Bidirectional):
        f, b = enc.forward_cell, enc.backward_cell
        hf, hb, outs_f, outs_b = f.initial_state(B), b.initial_state(B), [], []
        for s in range(S):
            hf = f.step(onehot(src[s], enc.input_size), hf)
            outs_f.append(hf)
        for s in reversed(range(S)):
            hb = b.step(onehot(src[s], enc.input_size), hb)
            outs_b.insert(0, hb)
        E = [mg.concatenate([a, c], axis=-1) for a, c in zip(outs_f, outs_b)]
        C = (hf, hb)
    else:
        h, E = enc.initial_state(B), []
        for s in range(S):
            h = enc.step(onehot(src[s], enc.input_size), h)
            E.append(h)
        C = (h,)
    mode = m.context_mode
    h = dec.initial_state(B) if mode == "input" else C[0]
    y_prev, total = onehot(np.full(B, BOS), m.n_out), 0
    for t in range(tgt.shape[0]):
        if mode == "attention":
            Es = mg.stack(E, axis=0)
            if step.score == "dot":
                scores = (Es * h).sum(axis=-1)
            else:
                scores = ((h @ step.Wa.T + Es @ step.Ua.T).tanh() * step.v).sum(axis=-1)
            a = mg.softmax(scores, axis=0)
            inp = mg.concatenate([y_prev, (a.reshape(*a.shape, 1) * Es).sum(axis=0)], axis=-1)
        elif mode in ("input", "both"):
            inp = mg.concatenate([y_prev, C[0]], axis=-1)
        else:
            inp = y_prev
        h = dec.step(inp, h)
        logp = mg.log_softmax(h @ step.V.T + step.c, axis=-1)
        for b in range(B):
            if tgt[t, b] != PAD:
                total = total - logp[b, int(tgt[t, b])]
        y_prev = onehot(tgt[t], m.n_out)
    return total


def grads(m):
    return [None if p.grad is None else p.grad.copy() for p in m.parameters()]


@pytest.mark.parametrize("mode, attention, encoder", [("initial", "additive", "gru"), ("input", "additive", "gru"),
                                                      ("both", "additive", "gru"), ("attention", "additive", "gru"),
                                                      ("attention", "dot", "gru"), ("attention", "additive", "bi")])
def test_the_loss_and_its_gradients_equal_a_hand_loop_over_the_same_cells(mode, attention, encoder):
    rng = np.random.default_rng(0)
    m = make(mode, 6, 7, 4, rng, attention, encoder)
    src, tgt = rng.integers(3, 6, (5, 3)), rng.integers(2, 7, (4, 3))
    res = m(src, tgt, reduction="sum")
    res.loss.backward()
    got = grads(m)
    m.zero_grad()
    want = hand_loss(m, src, tgt)
    want.backward()
    assert abs(res.loss.item() - want.item()) < 1e-10 * abs(want.item())
    for g, w in zip(got, grads(m)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert res.tokens == tgt.size and abs(m(src, tgt).loss.item() - want.item() / tgt.size) < 1e-12


@pytest.mark.parametrize("mode, encoder", [("attention", "bi"), ("attention", "gru"), ("both", "gru")])
def test_padding_changes_nothing_the_batch_is_the_sum_of_its_sequences(mode, encoder):
    rng = np.random.default_rng(1)
    m = make(mode, 6, 7, 3, rng, "additive", encoder)
    lengths, out_lengths = [4, 2, 3], [2, 4, 1]
    seqs = [rng.integers(3, 6, n) for n in lengths]
    outs = [np.append(rng.integers(3, 7, n - 1), EOS) for n in out_lengths]
    src, tgt = np.full((4, 3), PAD), np.full((4, 3), PAD)
    for b in range(3):
        src[:lengths[b], b], tgt[:out_lengths[b], b] = seqs[b], outs[b]
    padded = m(src, tgt, reduction="sum")
    # a masked encoder (a (B, 1) mask times its state) runs in the kernels, except a masked bidirectional
    # one (a delay of -1 inside Masked); its graph is there to draw either way
    assert padded.encoder.backend == ("graph" if encoder == "bi" else "numba")
    assert isinstance(padded.encoder.graph.rolled.cell, str)
    padded.loss.backward()
    got = grads(m)
    m.zero_grad()
    alone = [m(seqs[b].reshape(-1, 1), outs[b].reshape(-1, 1), reduction="sum") for b in range(3)]
    total = sum(r.loss for r in alone)
    total.backward()
    assert abs(padded.loss.item() - total.item()) < 1e-10 * total.item()
    for g, w in zip(got, grads(m)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert padded.tokens == sum(out_lengths)
    # C is each sequence's state after its own last token
    for b, r in enumerate(alone):
        for c_pad, c_alone in zip(as_tuple(padded.context), as_tuple(r.context)):
            np.testing.assert_allclose(c_pad.data[b], c_alone.data[0], rtol=1e-12, atol=1e-14)


@settings(max_examples=12)   # each example re-runs both chains twice per parameter element
@given(S=st.integers(1, 3), T=st.integers(1, 3), B=st.integers(1, 2), H=st.integers(1, 3),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["additive", "dot", "both"]))
def test_attention_and_context_gradients_match_finite_differences(S, T, B, H, seed, kind):
    rng = np.random.default_rng(seed)
    m = make("both" if kind == "both" else "attention", 4, 4, H, rng, "dot" if kind == "dot" else "additive")
    src, tgt = rng.integers(3, 4, (S, B)), rng.integers(1, 4, (T, B))
    assert mg.gradcheck(lambda *ps: m(src, tgt).loss, m.parameters())


def test_masked_holds_the_state_past_each_sequence_end():
    rng = np.random.default_rng(2)
    cell = rnn.LSTMCell(2, 3, rng=rng)
    xs = rng.normal(size=(5, 2, 2))
    res = rnn.run(rnn.Masked(cell), xs, context=np.array([[5.0], [2.0]]))
    short = rnn.run(cell, xs[:2, 1:])
    for s_masked, s_short in zip(res.state, short.state):
        np.testing.assert_allclose(s_masked.data[1], s_short.data[0], rtol=1e-12)
    np.testing.assert_allclose(res.outputs.data[2:, 1], np.broadcast_to(short.outputs.data[-1, 0], (3, 3)))


def test_greedy_decoding_feeds_back_its_own_argmax_and_stops_at_eos():
    rng = np.random.default_rng(3)
    m = make("attention", 6, 7, 4, rng)
    src = rng.integers(3, 6, (4, 2))
    d = m.decode(src, 6)
    assert d.tokens.shape == (6, 2) and d.alignments.shape == (6, 2, 4)
    np.testing.assert_allclose(d.alignments.sum(axis=-1), 1.0, rtol=1e-12)
    # by hand: the teacher-forced network fed its own choices gives the same outputs
    chosen = np.argmax(d.result.decoder.outputs.data, axis=-1)
    forced = m(src, chosen, reduction="sum")
    np.testing.assert_allclose(forced.decoder.outputs.data, d.result.decoder.outputs.data, rtol=1e-10)
    for b in range(2):
        row = chosen[:, b]
        if EOS in row:
            k = list(row).index(EOS)
            assert list(d.tokens[:k + 1, b]) == list(row[:k + 1]) and set(d.tokens[k + 1:, b]) <= {PAD}
        else:
            assert list(d.tokens[:, b]) == list(row)
    m.eos = None   # every token kept: each one chosen is the one the next step was fed
    for how in ("greedy", "sample"):
        d = m.decode(src, 6, how=how, seed=4)
        np.testing.assert_array_equal(d.tokens[:-1], np.argmax(d.result.decoder.fed.data[1:], axis=-1))
        np.testing.assert_array_equal(d.tokens, m.decode(src, 6, how=how, seed=4).tokens)
    assert not np.array_equal(m.decode(src, 6, how="sample", seed=4).tokens,
                              m.decode(src, 6, how="sample", seed=5).tokens)


def test_a_few_steps_of_training_lower_the_loss():
    rng = np.random.default_rng(5)
    m = make("attention", 8, 8, 8, rng)
    opt = mg.optim.Adam(m.parameters(), lr=0.05)
    src = rng.integers(3, 8, (5, 8))
    tgt = np.concatenate([src[::-1], np.full((1, 8), EOS)])
    losses = []
    for _ in range(15):
        r = m(src, tgt)
        opt.zero_grad()
        r.loss.backward()
        opt.step()
        losses.append(r.loss.item())
    assert losses[-1] < 0.75 * losses[0]


@pytest.mark.parametrize("call, words", [
    (lambda m: m(np.zeros((2, 2)), np.zeros((2, 2), int)), "src must be integer tokens"),
    (lambda m: m(np.full((2, 2), 9), np.zeros((2, 2), int)), r"src tokens must lie in \[0, 6\)"),
    (lambda m: m(np.array([[3, 0], [3, 4]]), np.ones((2, 2), int)), "followed only by padding"),
    (lambda m: m(np.full((2, 3), 3), np.ones((2, 2), int)), "src holds 3 sequences and tgt 2"),
    (lambda m: m.decode(np.full((2, 2), 3), 0), "steps must be a positive integer"),
    (lambda m: m.decode(np.full((2, 2), 3), 2, how="beam"), "how must be one of"),
])
def test_bad_input_is_a_clear_error(call, words):
    m = make("attention", 6, 7, 3, np.random.default_rng(6))
    with pytest.raises((ValueError, TypeError), match=words):
        call(m)


def test_mismatched_parts_are_refused_at_construction():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match=r"decoder reads input_size=7.*make it GRUCell\(10, ...\)"):
        rnn.Seq2Seq(rnn.GRUCell(6, 3, rng=rng), rnn.GRUCell(7, 3, rng=rng), 7, context="input")
    with pytest.raises(mg.ShapeError, match="cannot start the decoder"):
        rnn.Seq2Seq(rnn.GRUCell(6, 3, rng=rng), rnn.GRUCell(7, 4, rng=rng), 7)
    with pytest.raises(ValueError, match="dot-product attention"):
        rnn.Seq2Seq(rnn.GRUCell(6, 3, rng=rng), rnn.GRUCell(7 + 3, 4, rng=rng), 7, context="attention",
                    attention="dot")
