"""Pictures of minigrad graphs and recurrent nets, in the textbook's notation.

    import viz
    viz.draw_graph(loss)                                   # the engine's recorded graph
    viz.draw_rolled(cell)                                  # the cell with its delay loop (Fig. 10.2, left)
    viz.draw_unrolled(result, collapse=3, grad=True)       # the chain of steps, coloured by ‖∂L/∂h(t)‖
    viz.draw_tree(rnn.run_tree(cell, tree, target))        # a recursive net over its tree (Fig. 10.14)
    viz.render(digraph, "fig.svg")

Every function returns a `graphviz.Digraph` (shown inline in Jupyter).
`STYLE` is the one table of colours, shapes and fonts.
"""
from .draw import BUDGET, TooLarge, draw_graph, draw_rolled, draw_unrolled
from .render import GraphvizNotFound, render
from .style import STYLE
from .tree_scene import draw_tree

__all__ = ["draw_graph", "draw_rolled", "draw_unrolled", "draw_tree", "render", "STYLE", "GraphvizNotFound",
           "TooLarge", "BUDGET"]
