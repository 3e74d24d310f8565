"""Recurrent nets on the minigrad engine: cells, the rolled graph, its unfolding, BPTT."""
from .bidirectional import Bidirectional
from .cell import Cell, ElmanCell, GRUCell, LSTMCell
from .kernels import kernel_source
from .reservoir import EchoState, fit_readout
from .rolled import Loop, RolledGraph, Targets, rolled
from .run import RunResult, run
from .seq2seq import Decoded, Masked, Seq2Seq, Seq2SeqResult
from .stacked import Stacked
from .stateful import Stateful
from .tbptt import Window, tbptt, tbptt_loss
from .teacher import Generated, OutputRecurrentCell
from .torch_weights import from_torch
from .tree import RecursiveCell, Tree, TreeCell, TreeNode, TreeResult, run_tree, tree
from .unfold import UnfoldedGraph, unfold
from .regularizers import flow_regularizer
