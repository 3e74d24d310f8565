"""The one style table: every colour, shape and font the drawings use.

Change the look here and nowhere else.  Roles are those of
`minigrad.graph.ROLES`; the drawing code looks each role up in ``STYLE["roles"]``
and never names a colour itself.  Colours were picked to stay apart for
colour-blind readers (Okabe-Ito hues, light tints so black text stays legible).
"""
from __future__ import annotations

FONT = "Helvetica"

STYLE = {
    "font": {"name": FONT, "size": 12, "small": 10, "title": 14},   # points; nothing below 10
    "graph": {"fontname": FONT, "fontsize": "14", "nodesep": "0.3", "ranksep": "0.45",
              "bgcolor": "white", "newrank": "true", "outputorder": "edgesfirst"},
    "node": {"fontname": FONT, "fontsize": "12", "style": "filled", "penwidth": "1.2", "margin": "0.08,0.04"},
    "edge": {"fontname": FONT, "fontsize": "10", "color": "#444444", "arrowsize": "0.7"},
    # Fill and shape per role; the legend lists these in this order.
    "roles": {
        "parameter": {"fillcolor": "#F5C978", "shape": "box", "style": "filled,rounded", "legend": "parameter (shared)",
                      "legend_engine": "parameter"},
        "input": {"fillcolor": "#9ECAE9", "shape": "box", "style": "filled", "legend": "input x(t)",
                  "legend_engine": "input", "legend_tree": "input x, at a leaf"},
        "state": {"fillcolor": "#A8DDB5", "shape": "ellipse", "style": "filled", "legend": "state h(t), c(t)",
                  "legend_tree": "state h, at every node"},
        "op": {"fillcolor": "#EEEEEE", "shape": "box", "style": "filled,rounded", "legend": "op"},
        "output": {"fillcolor": "#E8A2C8", "shape": "ellipse", "style": "filled", "legend": "output o(t)",
                   "legend_engine": "output", "legend_tree": "output o"},
        "target": {"fillcolor": "#D9D2E9", "shape": "box", "style": "filled", "legend": "target y(t)",
                   "legend_tree": "target y"},
        "loss": {"fillcolor": "#F4A582", "shape": "ellipse", "style": "filled", "legend": "loss L(t), L",
                 "legend_tree": "loss L"},
        "constant": {"fillcolor": "#FFFFFF", "shape": "box", "style": "filled,dashed", "legend": "constant"},
        "context": {"fillcolor": "#B3E2CD", "shape": "box", "style": "filled,rounded,bold",
                    "legend": "context (read by every step)"},
        "step": {"fillcolor": "#FFFFFF", "shape": "ellipse", "style": "filled", "legend": "step index t"},
        "feedback": {"fillcolor": "#FBB4AE", "shape": "box", "style": "filled", "legend": "fed back y(t−1)"},
    },
    # The whole cell drawn as one box (detail="block").
    "block": {"fillcolor": "#D9D9D9", "shape": "box", "style": "filled,rounded,bold", "fontsize": "13"},
    # Op nodes of an engine expression (draw_graph): small, like micrograd's op circles.
    "opnode": {"fillcolor": "#EEEEEE", "shape": "ellipse", "style": "filled", "fontsize": "11",
               "margin": "0.04,0.02"},
    # The textbook's delay: a small black square on the state's feedback edge.
    "delay": {"shape": "square", "style": "filled", "fillcolor": "black", "color": "black",
              "width": "0.16", "height": "0.16", "fixedsize": "true", "label": "",
              "xlabel_text": "1-step delay", "fontsize": "10"},
    "edges": {
        "data": {},
        # h→(t) into a bidirectional net's o(t), laid out reversed: it keeps o(t) off the backward row
        "data_flat": {"dir": "back"},
        "state": {"penwidth": "2.0", "color": "#1B7837", "weight": "10"},  # the recurrence h(t-1) -> h(t), kept straight
        # a backward chain's links, laid out right to left: drawn reversed (dir=back), so g(T+1) sits at
        # the right and the chain is one straight row of leftward arrows, as in the book's Fig 10.11
        "state_back": {"penwidth": "2.0", "color": "#1B7837", "weight": "10", "dir": "back"},
        "feedback": {"penwidth": "2.0", "color": "#1B7837"},       # rolled: state output out to its delay square
        # rolled, ops detail: delay back into h(t-1); unconstrained, so h(t-1) stays left of the ops it feeds
        "feedback_back": {"penwidth": "2.0", "color": "#1B7837", "constraint": "false"},
        # Shared-parameter edges must not pull the steps out of their left-to-right line.
        "param": {"color": "#C8912C", "penwidth": "0.8", "constraint": "false"},  # a shared parameter into one step
        "detached": {"style": "dashed", "color": "#888888", "penwidth": "1.5"},  # truncated-BPTT cut
        "input": {"color": "#2B6CB0"},                              # x(t) up into its step's block
        "loss": {"color": "#A0457A", "penwidth": "0.8"},
        # L(t) into L = Σ L(t) from all but the last step: ranking along them would pull each step's
        # L(t) down to L's level and scramble the book's column x(t), h(t), o(t), L(t) bottom to top
        "loss_side": {"color": "#A0457A", "penwidth": "0.8", "constraint": "false"},
        "target": {"color": "#7B68A6"},                             # y(t) into its loss
        "context": {"color": "#2E8B57", "penwidth": "0.8", "constraint": "false"},  # like a parameter
        "fed": {"color": "#C0392B", "penwidth": "1.5"},             # o(t-1) or y(t-1) into the next step
        # a teacher-forced y(t-1): it sits beside the block it feeds, so ranking along it would stack
        # the steps in a staircase
        "fed_side": {"color": "#C0392B", "penwidth": "1.5", "constraint": "false"},
        # Invisible (ops detail): step t's source ops are ranked after step t-1's state, so steps never overlap.
        "order": {"style": "invis", "weight": "10"},
    },
    "cluster": {"style": "rounded,filled", "fillcolor": "#FAFAFA", "color": "#999999",
                "fontname": FONT, "fontsize": "14", "margin": "10"},
    # An mg.scope: a dashed box around the ops recorded in it.
    "scope": {"style": "rounded,dashed", "color": "#666666", "fontname": FONT, "fontsize": "11", "margin": "6"},
    "elision": {"shape": "plaintext", "style": "", "fontsize": "14", "fontcolor": "#333333"},
    "legend": {"fontsize": "10"},
    # attention heat maps: weight 0 to this colour at weight 1, a single hue so darker is larger
    "heatmap": {"low": "#FFFFFF", "high": "#08306B", "fontsize": "10"},
    # Gradient-norm colour scale, low (vanishing) to high (exploding): viridis stops.
    "gradient": {
        "stops": ["#440154", "#3B528B", "#21908C", "#5DC863", "#FDE725"],
        "zero": "#BBBBBB",        # exactly zero: no gradient reached the state at all
        "nonfinite": "#D7191C",   # inf or nan: it exploded
        "missing": "#FFFFFF",     # no gradient recorded (backward not run, or state not retained)
        "bar_cells": 9,
    },
}


def role_attrs(role):
    """Graphviz attributes for a node of `role` (unknown roles draw as ops)."""
    spec = STYLE["roles"].get(role, STYLE["roles"]["op"])
    return {k: v for k, v in spec.items() if not k.startswith("legend")}


def legend_entries(roles, wording="chain", states=()):
    """(role, fill colour, text) for each role in `roles`, in the style table's order.

    wording: "chain" (a recurrent net: x(t), h(t)), "engine" (a plain engine graph, which has no time
        steps to speak of) or "tree" (a recursive net: a value per tree node, no t).
    states: the state names the picture has (the state entry names them).
    """
    def text(role, spec):
        if wording != "chain":
            return spec.get(f"legend_{wording}", spec["legend"])
        if role == "state" and states:
            return "state " + ", ".join(f"{s}(t)" for s in states)
        return spec["legend"]
    return [(r, s["fillcolor"], text(r, s)) for r, s in STYLE["roles"].items() if r in roles]
