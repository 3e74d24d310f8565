"""The pictures of encoder–decoder nets (Fig. 10.12) and of attention weights, read from their DOT."""
import re

import numpy as np
import pytest

import rnn
import viz


def model(mode, rng, V=6, H=3):
    extra = {"initial": 0, "input": H, "both": H, "attention": H}[mode]
    return rnn.Seq2Seq(rnn.GRUCell(V, H, rng=rng), rnn.GRUCell(V + extra, H, rng=rng), V, context=mode, eos=2,
                       rng=rng)


def edges_into(src, node):
    return re.findall(rf'^\s*"?([\w.]+)"? -> "?{re.escape(node)}"?[ \n]', src, re.M)


def edges_out_of(src, node):
    return re.findall(rf'^\s*"?{re.escape(node)}"? -> "?([\w.]+)"?', src, re.M)


@pytest.mark.parametrize("mode", ["initial", "input", "both", "attention"])
def test_the_joint_picture_is_the_encoder_then_c_then_the_decoder(mode):
    rng = np.random.default_rng(0)
    m = model(mode, rng)
    src, tgt = np.array([[3], [4], [5]]), np.array([[5], [4], [3], [2]])
    res = m(src, tgt)
    dot = viz.draw_seq2seq(res).source
    assert re.findall(r"subgraph \"?cluster_enc\.(t\d+)", dot) == ["t0", "t1", "t2"]
    assert re.findall(r"subgraph \"?cluster_dec\.(t\d+)", dot) == ["t0", "t1", "t2", "t3"]
    enc_final = "enc." + res.encoder.graph.final[0]
    assert edges_into(dot, "viz.C") == [enc_final]                      # C is the encoder's final state
    blocks = [f"dec.viz.block.t{t}" for t in range(4)]
    into_c = [d for d in edges_out_of(dot, "viz.C") if d in blocks]
    if mode == "input":
        assert into_c == blocks and "dec." + res.decoder.graph.state0[0] in dot   # read at every step, h(0) zeros
    elif mode == "both":                                                 # as its initial state and its input
        assert sorted(into_c) == sorted(blocks + blocks[:1])
    else:
        assert into_c == blocks[:1]                                      # the decoder's initial state
    if mode == "attention":
        outs = ["enc." + o for o in res.encoder.graph.outputs]
        assert sorted(edges_into(dot, "viz.E")) == sorted(outs)         # E: every encoder output
        assert [d for d in edges_out_of(dot, "viz.E") if d in blocks] == blocks
    else:
        assert "viz.E" not in dot
    assert dot.count('"viz.legend"') == 1 and "encoder parameters" in dot and "decoder parameters" in dot


def test_the_attention_heat_map_shades_each_weight_and_labels_both_axes():
    w = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    dot = viz.draw_attention(w, source=["a", "b"], target=["x", "y", "z"]).source
    cells = re.findall(r'<td bgcolor="(#[0-9A-F]{6})"[^>]*><font color="#[0-9A-F]{6}">([0-9.]+)</font>', dot)
    assert [float(v) for _, v in cells] == [0.9, 0.1, 0.2, 0.8, 0.5, 0.5]
    lum = {float(v): sum(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c, v in cells}
    assert lum[0.9] < lum[0.8] < lum[0.5] < lum[0.2] < lum[0.1]                  # darker is larger
    for label in ("<b>a</b>", "<b>b</b>", "<b>x</b>", "<b>y</b>", "<b>z</b>"):
        assert label in dot


def test_a_decoded_sequence_s_alignments_are_drawn_from_the_decode_result():
    rng = np.random.default_rng(1)
    m = model("attention", rng)
    d = m.decode(np.array([[3, 4], [4, 5]]), 3)
    dot = viz.draw_attention((d, 1)).source
    values = [float(v) for v in re.findall(r'<font color="#[0-9A-F]{6}">([0-9.]+)</font>', dot)]
    np.testing.assert_allclose(values, np.round(d.alignments[:, 1].ravel(), 2))
    with pytest.raises(ValueError, match="does not attend"):
        viz.draw_attention((model("initial", rng).decode(np.array([[3]]), 2), 0))
    with pytest.raises(TypeError, match="expected the result of an rnn.Seq2Seq"):
        viz.draw_seq2seq(d)
