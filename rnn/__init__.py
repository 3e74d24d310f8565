"""Recurrent nets on the minigrad engine: cells, the rolled graph, its unfolding, BPTT."""
from .cell import Cell, ElmanCell, GRUCell, LSTMCell
from .rolled import Loop, RolledGraph, Targets, rolled
from .run import RunResult, run
from .stateful import Stateful
from .tbptt import Window, tbptt, tbptt_loss
from .teacher import Generated, OutputRecurrentCell
from .unfold import UnfoldedGraph, unfold
