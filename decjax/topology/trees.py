"""Spanning trees: the graphs RelaySum relays over (Vogels et al., 2021).

Each is an ordinary :class:`~decjax.topology.Topology` (Metropolis weights, so gossip
algorithms run on it too); :func:`tree_edges` reads back its edges and refuses a graph
that is not a spanning tree. :func:`double_binary_trees` has period 2: gossip alternates
its two trees, while :func:`decjax.algorithms.relaysgd` relays half of the coordinates
over each (the authors' ``MultiTopologyRelayMechanism``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import jax
import numpy as np

from decjax._validation import check_int, is_traced
from decjax.topology.base import Topology
from decjax.topology.graphs import _neighbor_lists, from_edges, from_neighbor_lists
from decjax.topology.kinds.faulty import Faulty


def chain(n: int) -> Topology:
    """The path ``0 - 1 - ... - (n - 1)``: the tree of largest diameter, ``n - 1``, and
    degree at most 2 (the same messages per step as a ring).

    Examples:
      >>> import decjax
      >>> [round(w, 4) for w in decjax.topology.chain(4).matrix().tolist()[0]]  # Metropolis
      [0.6667, 0.3333, 0.0, 0.0]
    """
    n = check_int("n", n, minimum=1)
    return from_edges(n, [(i, i + 1) for i in range(n - 1)], name="chain")


def _binary_tree_edges(n: int, mirrored: bool) -> list[tuple[int, int]]:
    """The authors' numbering: ``w >= 1`` has children ``2w, 2w + 1``; 0 hangs from 1."""
    edges = [(w // 2, w) for w in range(2, n)] + ([(0, 1)] if n > 1 else [])
    if mirrored:
        edges = [(n - 1 - i, n - 1 - j) for i, j in edges]
    return edges


def binary_tree(n: int, *, mirrored: bool = False) -> Topology:
    """The binary tree of RelaySGD's code: worker ``w >= 1`` is the parent of ``2w`` and
    ``2w + 1``, and worker 0 hangs from worker 1 (the root). Degree at most 3, diameter
    about ``2 log2 n``. ``mirrored`` renumbers ``w -> n - 1 - w`` (the second tree of
    :func:`double_binary_trees`).

    Examples:
      >>> import decjax
      >>> decjax.topology.binary_tree(8).max_degree()
      3
    """
    n = check_int("n", n, minimum=1)
    name = "binary_tree" + ("_mirrored" if mirrored else "")
    return from_edges(n, _binary_tree_edges(n, bool(mirrored)), name=name)


def double_binary_trees(n: int) -> Topology:
    """Two binary trees as a period-2 topology: :func:`binary_tree` and its mirror.

    The mirror's leaves are the first tree's inner workers (as in NCCL's double binary
    trees), so every worker relays on at most one tree as an inner node when ``n`` is a
    power of two. Gossip alternates the trees step by step;
    :func:`decjax.algorithms.relaysgd` sends half of the coordinates over each tree at
    every step, as the authors' experiments do.

    Examples:
      >>> import decjax
      >>> decjax.topology.double_binary_trees(16).period
      2
    """
    n = check_int("n", n, minimum=2)
    lists = [_neighbor_lists(n, _binary_tree_edges(n, m), "metropolis") for m in (False, True)]
    width = max(nbr.shape[1] for nbr, _ in lists)
    neighbors = np.tile(np.arange(n)[None, :, None], (2, 1, width))
    weights = np.zeros((2, n, width))
    for t, (nbr, w) in enumerate(lists):
        neighbors[t, :, : nbr.shape[1]], weights[t, :, : w.shape[1]] = nbr, w
    return from_neighbor_lists(neighbors, weights, name="double_binary_trees")


def spanning_tree(graph: Any, *, root: int = 0) -> Topology:
    """The shortest-path (breadth-first) spanning tree of a connected graph from ``root``.

    Every worker keeps its distance to ``root``: the tree the authors build on a social
    network (``best_spanning_tree_with_root``, lowest-numbered parents first).

    Args:
      graph: a :class:`~decjax.topology.Topology` (its step-0 graph) or a networkx graph
        (nodes numbered in ``graph.nodes`` order).
      root: the worker the tree is grown from.

    Examples:
      >>> import decjax
      >>> tree = decjax.topology.spanning_tree(decjax.ring(8))
      >>> len(decjax.topology.tree_edges(tree)[0])
      7
    """
    adjacency = _adjacency(graph)
    n = len(adjacency)
    root = check_int("root", root, minimum=0)
    if root >= n:
        raise ValueError(f"root must be a worker in 0..{n - 1}, got {root}")
    parent, _ = _search([sorted(a) for a in adjacency], root)
    if len(parent) < n:
        raise ValueError(
            f"graph must be connected to have a spanning tree; {n - len(parent)} of its "
            f"{n} workers cannot be reached from root {root}"
        )
    edges = [(parent[j], j) for j in range(n) if j != root]
    return from_edges(n, edges, name=f"spanning_tree(root={root})")


def _adjacency(graph: Any) -> list[set[int]]:
    if isinstance(graph, Topology):
        return [set(j) for j in _neighbours_per_step(graph, "graph")[0]]
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TypeError(
            f"graph must be a decjax Topology or a networkx graph, got {type(graph).__name__}"
        )
    index = {node: i for i, node in enumerate(graph.nodes)}
    adjacency: list[set[int]] = [set() for _ in index]
    for u, v in graph.to_undirected().edges:
        if u != v:
            adjacency[index[u]].add(index[v])
            adjacency[index[v]].add(index[u])
    return adjacency


def _neighbours_per_step(topology: Topology, name: str) -> list[list[list[int]]]:
    """Each step's neighbours of every worker (``W[i, j] != 0``, ``j != i``), refusing
    a topology whose graph is drawn at random or subject to faults."""
    if isinstance(topology, Faulty) or not topology.has_fixed_matrices():
        raise ValueError(
            f"{name} must have fixed graphs; {topology.name} is drawn afresh or fails at "
            "random at every step"
        )
    if any(is_traced(leaf) for leaf in jax.tree.leaves(topology)):
        raise ValueError(
            f"{name} {topology.name} is traced (built inside jit or vmap, or stacked by a "
            "sweep over topologies); a tree's routes are read from its concrete graph: build "
            "it outside (tree = decjax.topology.chain(n) before the sweep) and run one tree "
            "per sweep (decjax.compare puts runs side by side)"
        )
    n = topology.n
    try:  # O(n k) from neighbour lists, where the kind keeps them concretely
        nbr, w = (np.asarray(a) for a in topology.lists())
    except (ValueError, NotImplementedError, jax.errors.JAXTypeError):
        nbr = None
    if nbr is not None:
        off = (w != 0) & (nbr != np.arange(n)[None, :, None])
        return [
            [sorted({int(j) for j in nbr[t, i][off[t, i]]}) for i in range(n)]
            for t in range(len(nbr))
        ]
    return [
        [[int(j) for j in np.flatnonzero(w[i]) if j != i] for i in range(n)]
        for w in topology.numpy_matrices()
    ]


def tree_neighbours(topology: Topology, *, name: str = "topology") -> list[list[list[int]]]:
    """The sorted neighbour lists of every worker on each spanning tree of ``topology`` (one
    per step of its period); refuses, in one line, a graph that is not one."""
    if not isinstance(topology, Topology):
        raise TypeError(f"{name} must be a Topology, got {type(topology).__name__}")
    steps = _neighbours_per_step(topology, name)
    n = topology.n
    for t, neighbours in enumerate(steps):
        where = f" (step {t})" if topology.period > 1 else ""
        pairs = {(i, j) for i in range(n) for j in neighbours[i]}
        if any((j, i) not in pairs for i, j in pairs):
            raise ValueError(f"{name} {topology.name}{where} is directed; a tree is undirected")
        edges = len(pairs) // 2
        connected = len(_search(neighbours, 0)[1]) == n
        if edges != n - 1 or not connected:
            raise ValueError(
                f"{name} must be a spanning tree (n - 1 = {n - 1} edges, connected), but "
                f"{topology.name}{where} has {edges} edges"
                + ("" if connected else " and is disconnected")
                + "; use decjax.topology.chain(n), binary_tree(n), double_binary_trees(n) "
                "or spanning_tree(graph)"
            )
    return steps


def tree_edges(topology: Topology, *, name: str = "topology") -> list[list[tuple[int, int]]]:
    """The undirected edges ``(i, j)``, ``i < j``, of each spanning tree of ``topology``
    (one list per step of its period); refuses, in one line, a graph that is not one.

    Examples:
      >>> import decjax
      >>> decjax.topology.tree_edges(decjax.topology.chain(3))
      [[(0, 1), (1, 2)]]
    """
    return [
        [(i, j) for i, adjacent in enumerate(neighbours) for j in adjacent if i < j]
        for neighbours in tree_neighbours(topology, name=name)
    ]


def tree_diameter(neighbours: list[list[int]]) -> int:
    """The diameter of a tree given by its neighbour lists (two breadth-first searches)."""
    _, depth = _search(neighbours, 0)
    _, depth = _search(neighbours, max(depth, key=lambda i: depth[i]))
    return max(depth.values())


def _search(neighbours: list[list[int]], start: int) -> tuple[dict[int, int], dict[int, int]]:
    """Breadth-first from ``start``, each list in its order: the parent and the depth of
    every worker reached."""
    parent, depth = {start: start}, {start: 0}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if j not in depth:
                parent[j], depth[j] = i, depth[i] + 1
                queue.append(j)
    return parent, depth
