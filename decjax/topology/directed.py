"""Directed graphs with column-stochastic (push-sum) weights.

On a directed graph a worker knows how many it *sends* to, not who sends to
it, so the weights it can choose are its column: worker ``j`` splits its mass
uniformly over itself and its out-neighbours, ``W[i, j] = 1 / (d_j^out + 1)``.
The columns sum to one (mass is conserved), the rows in general do not, so
plain gossip drifts towards a weighted average; the push-sum family
(:func:`decjax.sgp`, :func:`decjax.push_diging`,
:func:`decjax.gossip.push_sum_average`) mixes a weight vector alongside and
de-biases. Circulant directed graphs (the directed ring and exponential graphs
of the SGP paper) are regular, hence doubly stochastic, and stored as shifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from decjax._bits import ceil_log2
from decjax._validation import check_choice, check_int
from decjax.topology.base import STOCHASTIC_ATOL, Topology, as_weights
from decjax.topology.checks import check_matrix_stack
from decjax.topology.circulant import from_offsets
from decjax.topology.kinds import Sparse

if TYPE_CHECKING:
    import networkx as nx

DIRECTED_WEIGHT_RULES = ("uniform_out",)


def from_digraph(graph: nx.Graph, *, weights: str = "uniform_out", name: str | None = None):
    """A static column-stochastic topology from a directed graph (push-sum weights).

    An edge ``u -> v`` means ``u`` sends to ``v``. With ``weights="uniform_out"``
    each node splits its mass over itself and its out-neighbours:
    ``W[v, u] = W[u, u] = 1 / (d_u^out + 1)``. An undirected ``Graph`` is read
    as both directions of every edge. The graph must be strongly connected.

    The result knows it is column-stochastic (``topology.column_stochastic``)
    and, unless the graph is regular, not row-stochastic (``topology.push``):
    gossip then conserves the worker sum, and only the push-sum algorithms
    accept it.

    Examples:
      >>> import networkx as nx, decjax
      >>> star_out = nx.DiGraph([(0, 1), (0, 2), (1, 0), (2, 0)])
      >>> topo = decjax.topology.from_digraph(star_out)
      >>> topo.push, [round(v, 3) for v in topo.matrix()[:, 0].tolist()]
      (True, [0.333, 0.333, 0.333])
    """
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx DiGraph, got {type(graph).__name__}")
    if graph.is_multigraph():
        raise TypeError(
            f"graph must be a simple graph, got a {type(graph).__name__} (parallel edges have "
            "no single weight): collapse it first, e.g. nx.DiGraph(graph) or nx.Graph(graph)"
        )
    check_choice("weights", weights, DIRECTED_WEIGHT_RULES)
    n = graph.number_of_nodes()
    if n == 0:
        raise ValueError("graph must have at least one node")
    index = {node: i for i, node in enumerate(graph.nodes)}
    out: list[set[int]] = [set() for _ in range(n)]
    for u, v in graph.edges:
        if u != v:
            out[index[u]].add(index[v])
            if not graph.is_directed():
                out[index[v]].add(index[u])
    return from_out_neighbors(out, name=name or graph.name or "digraph")


def from_out_neighbors(out: list[set[int]], *, name: str) -> Topology:
    """The ``uniform_out`` topology of out-neighbour sets, stored as in-neighbour lists."""
    n = len(out)
    senders: list[list[int]] = [[] for _ in range(n)]
    for j, targets in enumerate(out):
        for i in targets:
            senders[i].append(j)
    k = 1 + max(len(s) for s in senders)
    nbr = np.tile(np.arange(n)[:, None], (1, k))  # slot 0: self; padding: self, weight 0
    w = np.zeros((n, k))
    share = 1.0 / (np.array([len(t) for t in out]) + 1.0)
    for i in range(n):
        w[i, 0] = share[i]
        for slot, j in enumerate(sorted(senders[i]), start=1):
            nbr[i, slot], w[i, slot] = j, share[j]
    dense = np.zeros((1, n, n))
    np.add.at(dense[0], (np.arange(n)[:, None].repeat(k, 1), nbr), w)
    check_matrix_stack("graph", dense, doubly_stochastic=False, connected=True)
    return Sparse(
        n=n,
        period=1,
        name=name,
        neighbors=jnp.asarray(nbr[None], jnp.int32),
        weights=as_weights(w[None]),
        row_stochastic=bool(np.all(np.abs(dense.sum(axis=2) - 1.0) <= STOCHASTIC_ATOL)),
        column_stochastic=True,
    )


def directed_ring(n: int) -> Topology:
    """Directed ring: worker ``i`` sends half its mass to ``i + 1`` and keeps half.

    ``W = (I + P^{-1}) / 2`` (``W[i, i - 1] = 1/2``): regular, hence doubly
    stochastic, with complex eigenvalues ``(1 + e^{-2 pi i k / n}) / 2``.

    Examples:
      >>> import decjax
      >>> decjax.topology.directed_ring(4).matrix()[1].tolist()
      [0.5, 0.5, 0.0, 0.0]
    """
    n = check_int("n", n, minimum=1)
    if n == 1:
        return from_offsets(1, [[0]], [[1.0]], name="directed_ring")
    return from_offsets(n, [[0, -1]], [[0.5, 0.5]], name="directed_ring")


def directed_exponential(n: int) -> Topology:
    """Directed exponential graph of SGP (Assran et al., 2019): ``i`` sends to ``i + 2^k``.

    Every ``2^k <= n - 1``, uniform weights over the out-neighbours and itself
    (regular, so doubly stochastic). It is :func:`decjax.exponential` with the
    direction of every edge reversed.

    Examples:
      >>> import decjax
      >>> decjax.topology.directed_exponential(8).offsets
      ((0, 7, 6, 4),)
    """
    n = check_int("n", n, minimum=1)
    offsets = [0] + [-(1 << k) % n for k in range(ceil_log2(n)) if (1 << k) <= n - 1]
    return from_offsets(n, [offsets], [[1.0 / len(offsets)] * len(offsets)], name="directed_exp")


def one_peer_directed_exponential(n: int) -> Topology:
    """One-peer directed exponential graph of SGP: at step ``t``, ``i`` sends to ``i + 2^t``.

    ``W_t = (I + P^{-2^{t mod tau}}) / 2`` (exponents taken ``mod tau``) with
    ``tau = ceil(log2 n)``; for
    ``n = 2^tau`` one period averages exactly.

    Examples:
      >>> import decjax
      >>> decjax.topology.one_peer_directed_exponential(8).offsets
      ((0, 7), (0, 6), (0, 4))
    """
    n = check_int("n", n, minimum=1)
    tau = ceil_log2(n)
    if tau == 0:
        return from_offsets(1, [[0]], [[1.0]], name="one_peer_directed_exp")
    offsets = [[0, -(1 << t) % n] for t in range(tau)]
    return from_offsets(n, offsets, [[0.5, 0.5]] * tau, name="one_peer_directed_exp")
