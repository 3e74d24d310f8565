"""The char-LM trainer computes what min-char-rnn's hand-written loop computes, to rounding.

`minigrad train`'s step is made fast by fusing (softmax_cross_entropy, the compiled clip and
Adagrad, the rnn kernels); the reference here fuses nothing: forward, BPTT by hand, the joint-norm
clip and Adagrad in NumPy, from the same initial weights.  Each step's loss must agree.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad_cli.charlm import CharModel, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from min_char_rnn import hand_written_step  # noqa: E402  (the benchmark's reference loop, beside it)


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
    reference = hand_written_step(weights, ids, 9, clip, 0.1, 1e-8)
    np.testing.assert_allclose(got, [reference() for _ in range(30)], rtol=1e-10, atol=0)
