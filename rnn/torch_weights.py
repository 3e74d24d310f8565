"""PyTorch's recurrent layers' weights into minigrad cells, from plain arrays (no torch import).

``from_torch(kind, state_dict, nonlinearity="tanh", dtype=None)`` takes the state dict of a
``torch.nn.LSTM``, ``GRU`` or ``RNN`` — keys ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``, ``..._l1``, ``..._l0_reverse`` — as tensors' ``.numpy()`` or any arrays, and
returns the same network: one cell for one layer in one direction, else ``Stacked`` layers, each
``Bidirectional`` when the dict has ``_reverse`` weights.  The cells already use PyTorch's layouts
and gate orders (i, f, g, o; r, z, n), so numbers go across unchanged; a layer without biases
(``bias=False``) gets zero ones.  LSTM projections (``proj_size``) have no counterpart here.
"""
from __future__ import annotations

import re

import numpy as np

from .bidirectional import Bidirectional
from .cell import ElmanCell, GRUCell, LSTMCell
from .stacked import Stacked

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?")


def from_torch(kind, state_dict, nonlinearity="tanh", dtype=None):
    kind = str(kind).lower()
    if kind not in _GATES:
        raise ValueError(f"from_torch: kind must be one of {tuple(_GATES)}, got {kind!r}")
    arrays, layers = {}, {}
    for key, value in dict(state_dict).items():
        m = _KEY.fullmatch(key)
        if m is None:
            raise ValueError(f"from_torch: {key!r} is not a weight of torch.nn.{kind.upper()} "
                             "(expected weight_ih_l0, bias_hh_l1_reverse, ...)")
        name, layer, reverse = m.group(1), int(m.group(2)), bool(m.group(3))
        if name == "weight_hr":
            raise ValueError("from_torch: LSTM projections (proj_size, weight_hr_l*) have no minigrad counterpart")
        arr = _array(value)
        arrays[(layer, reverse, name)] = arr if dtype is None else arr.astype(dtype)
        layers.setdefault(layer, set()).add(reverse)
    if not arrays:
        raise ValueError("from_torch: the state dict holds no weights")
    count = max(layers) + 1
    if sorted(layers) != list(range(count)):
        raise ValueError(f"from_torch: layers {sorted(layers)} are not 0..{count - 1}")
    bidirectional = any(True in d for d in layers.values())
    built = []
    for layer in range(count):
        directions = [_cell(kind, arrays, layer, rev, nonlinearity) for rev in ((False, True) if bidirectional
                                                                                 else (False,))]
        built.append(Bidirectional(*directions) if bidirectional else directions[0])
    for i, (below, above) in enumerate(zip(built, built[1:])):
        if above.input_size != below.emits:
            raise ValueError(f"from_torch: layer {i + 1} reads {above.input_size} inputs, "
                             f"layer {i} emits {below.emits}")
    return built[0] if len(built) == 1 else Stacked(built)


def _array(value):
    """A NumPy array from an array or a torch tensor (detached, on the CPU), without importing torch."""
    for step in ("detach", "cpu", "numpy"):
        if hasattr(value, step) and not isinstance(value, np.ndarray):
            value = getattr(value, step)()
    return np.asarray(value)


def _cell(kind, arrays, layer, reverse, nonlinearity):
    where = f"layer {layer}{' reverse' if reverse else ''}"
    try:
        w_ih, w_hh = arrays[(layer, reverse, "weight_ih")], arrays[(layer, reverse, "weight_hh")]
    except KeyError:
        raise ValueError(f"from_torch: {where} has no weight_ih/weight_hh") from None
    gates = _GATES[kind]
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_hh.shape != (gates * hidden, hidden) or w_ih.shape[0] != gates * hidden:
        raise ValueError(f"from_torch: {where}: weight_ih {w_ih.shape} and weight_hh {w_hh.shape} are not "
                         f"({gates} x hidden, inputs) and ({gates} x hidden, hidden) for a {kind.upper()}")
    zeros = np.zeros(gates * hidden, dtype=w_hh.dtype)
    state = {"weight_ih": w_ih, "weight_hh": w_hh,
             "bias_ih": arrays.get((layer, reverse, "bias_ih"), zeros),
             "bias_hh": arrays.get((layer, reverse, "bias_hh"), zeros)}
    dtype = w_hh.dtype
    cell = (ElmanCell(w_ih.shape[1], hidden, nonlinearity=nonlinearity, dtype=dtype) if kind == "rnn" else
            {"lstm": LSTMCell, "gru": GRUCell}[kind](w_ih.shape[1], hidden, dtype=dtype))
    cell.load_state_dict(state)
    return cell
