"""Unfolding: the rolled graph's cycle turned into a DAG of T steps (Goodfellow et al., Fig. 10.2, right).

`unfold(rolled, T)` copies every per-step node T times, cuts each delay edge
and joins step t's state output to the consumers of the state input at step
t+1.  Parameters are not copied: one node per parameter feeds every step,
which is why BPTT sums each parameter's gradient over time.
"""
from __future__ import annotations

from dataclasses import replace

from minigrad.graph import Edge, Graph


def unfold(rolled, T):
    """A DAG of T copies of `rolled`'s step; copied nodes carry (template, t).

    Node ids: a parameter keeps its rolled id; the copy of rolled node n at
    step t is "t{t}.{n}".  graph.meta gains::

        T          number of steps
        x          [id of x at step t for t in range(T)]
        state0     [id of the initial state input, per state]
        state_out  [[id of state output at step t, per state] for t in range(T)]
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"unfold: T must be a positive integer number of steps, got {T!r}")
    meta = rolled.meta
    shared = {nid for nid, n in rolled.nodes.items() if n.role == "parameter"}
    carried = {in_id: out_id for _, in_id, out_id in meta["states"]}
    order, arguments = rolled.topological_order(), rolled.arguments()

    nodes = [replace(rolled.nodes[p], template=p) for p in order if p in shared]
    edges, per_step, prev = [], [], {}
    for t in range(T):
        local = {p: p for p in shared}
        for nid in order:
            if nid in shared:
                continue
            if nid in carried and t > 0:
                local[nid] = prev[nid]  # the delay edge, cut: last step's output stands in for this input
                continue
            new_id = f"t{t}.{nid}"
            nodes.append(replace(rolled.nodes[nid], id=new_id, t=t, template=nid))
            edges.extend(Edge(local[src], new_id, slot) for slot, src in enumerate(arguments[nid]))
            local[nid] = new_id
        prev = {in_id: local[out_id] for in_id, out_id in carried.items()}
        per_step.append(local)

    graph = Graph(nodes, edges)
    graph.meta = dict(meta, T=T, rolled=rolled,
                      x=[step[meta["x"]] for step in per_step],
                      state0=[per_step[0][in_id] for _, in_id, _ in meta["states"]],
                      state_out=[[step[out_id] for _, _, out_id in meta["states"]] for step in per_step],
                      state_names=[name for name, _, _ in meta["states"]])
    graph.topological_order()  # raises CycleError if the unfolding were not a DAG
    return graph
