"""Pictures of minigrad graphs and recurrent nets, in the textbook's notation.

    import viz
    viz.draw_graph(loss)                                   # the engine's recorded graph
    viz.draw_rolled(cell)                                  # the cell with its delay loop (Fig. 10.2, left)
    viz.draw_unrolled(result, collapse=3, grad=True)       # the chain of steps, coloured by ‖∂L/∂h(t)‖
    viz.draw_seq2seq(model(src, tgt))                      # encoder, C, decoder (Fig. 10.12)
    viz.draw_attention((model.decode(src, T), 0))          # α(t, s) as a heat map
    viz.draw_tree(rnn.run_tree(cell, tree, target))        # a recursive net over its tree (Fig. 10.14)
    viz.render(digraph, "fig.svg")

Every function returns a `graphviz.Digraph` (shown inline in Jupyter).
`STYLE` is the one table of colours, shapes and fonts.
"""
from .draw import BUDGET, TooLarge, draw_attention, draw_graph, draw_rolled, draw_seq2seq, draw_unrolled
from .render import GraphvizNotFound, render
from .style import STYLE
from .tree_scene import draw_tree

__all__ = ["draw_graph", "draw_rolled", "draw_unrolled", "draw_seq2seq", "draw_attention", "draw_tree", "render",
           "STYLE", "GraphvizNotFound", "TooLarge", "BUDGET"]
