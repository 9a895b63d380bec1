"""Topologies to and from networkx graphs (networkx is imported when they are called)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from decjax._validation import check_int
from decjax.topology.base import Topology
from decjax.topology.graphs import WEIGHT_RULES, from_edges, from_matrix

if TYPE_CHECKING:
    import networkx as nx


def from_networkx(graph: nx.Graph, *, weights: str = "metropolis", name: str | None = None):
    """A static topology from a networkx graph.

    Nodes are numbered in ``graph.nodes`` order. For a ``DiGraph`` an edge
    ``u -> v`` means ``u`` sends to ``v``, so ``W[v, u]`` is its weight.

    Args:
      graph: a ``networkx.Graph`` or ``DiGraph``.
      weights: ``"metropolis"``, ``"uniform"`` (undirected graphs), or the name
        of an edge attribute holding ``W[receiver, sender]``; self-weights are
        then ``1 - sum`` of the row.
      name: label (defaults to the graph's name or ``"networkx"``).

    Examples:
      >>> import networkx as nx, decjax
      >>> decjax.from_networkx(nx.petersen_graph()).max_degree()
      3
    """
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
    if graph.is_multigraph():
        raise TypeError(
            f"graph must be a simple graph, got a {type(graph).__name__} (parallel edges have "
            "no single weight): collapse it first, e.g. nx.DiGraph(graph) or nx.Graph(graph)"
        )
    if graph.number_of_nodes() == 0:
        raise ValueError("graph must have at least one node")
    if not isinstance(weights, str):
        raise TypeError(f"weights must be a string, got {type(weights).__name__}")
    name = name or graph.name or "networkx"
    index = {node: i for i, node in enumerate(graph.nodes)}
    n = len(index)
    if weights in WEIGHT_RULES:
        if graph.is_directed():
            raise ValueError(
                f"weights={weights!r} needs an undirected graph; pass the name of an "
                "edge attribute for a DiGraph"
            )
        edges = [(index[u], index[v]) for u, v in graph.edges]
        return from_edges(n, edges, weights=weights, name=name)
    w = np.zeros((n, n))
    for u, v, data in graph.edges(data=True):
        if weights not in data:
            raise ValueError(f"weights={weights!r}: edge ({u}, {v}) has no such attribute")
        if u == v:
            continue
        w[index[v], index[u]] = data[weights]
        if not graph.is_directed():
            w[index[u], index[v]] = data[weights]
    w[np.diag_indices(n)] = 1.0 - w.sum(axis=1)
    return from_matrix(w, name=name)


def to_networkx(topology: Topology, step: int = 0) -> nx.Graph:
    """The graph used at ``step``: a ``Graph`` if ``W_t`` is symmetric, else a ``DiGraph``.

    Edge ``j -> i`` carries ``weight = W_t[i, j]`` (for a ``DiGraph``; both
    directions for a ``Graph``); node ``i`` carries ``self_weight = W_t[i, i]``.
    ``from_networkx(to_networkx(t), weights="weight")`` rebuilds ``t``'s matrix.

    Examples:
      >>> import decjax
      >>> decjax.to_networkx(decjax.ring(5)).number_of_edges()
      5
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    step = check_int("step", step, minimum=0)
    import networkx as nx

    w = topology.numpy_matrices()[step % topology.period]
    graph = nx.Graph() if np.allclose(w, w.T, atol=1e-7) else nx.DiGraph()
    graph.name = topology.name
    for i in range(topology.n):
        graph.add_node(i, self_weight=float(w[i, i]))
    for i, j in zip(*np.nonzero(w), strict=True):
        if i != j:
            graph.add_edge(int(j), int(i), weight=float(w[i, j]))
    return graph
