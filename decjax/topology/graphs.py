"""Topologies from graphs (sparse neighbour lists) and from matrices.

Weight rules for an undirected graph with degrees ``d_i``:

``"metropolis"`` (Metropolis–Hastings, the default)
    ``W[i, j] = 1 / (max(d_i, d_j) + 1)`` on edges, self-weight the remainder.
    Symmetric and doubly stochastic on any graph.
``"uniform"``
    ``W[i, j] = 1 / (d_i + 1)`` over the closed neighbourhood. Doubly
    stochastic only on regular graphs (otherwise construction fails).
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np

from decjax._bits import is_power_of_two
from decjax._random import numpy_rng
from decjax._validation import check_choice, check_in_range, check_int
from decjax.topology.base import STOCHASTIC_ATOL, Topology, as_weights
from decjax.topology.checks import check_matrix_stack, check_sparse
from decjax.topology.kinds import Dense, Sparse

WEIGHT_RULES = ("metropolis", "uniform")


def _neighbor_lists(n: int, edges: Iterable[tuple[int, int]], rule: str):
    """Padded ``(n, k)`` neighbour indices and weights of one undirected graph."""
    adjacency: list[set[int]] = [set() for _ in range(n)]
    for edge in edges:
        if len(edge) != 2 or not all(isinstance(v, numbers.Integral) and 0 <= v < n for v in edge):
            raise ValueError(f"edges must be pairs of workers in 0..{n - 1}, got {edge!r}")
        i, j = (int(v) for v in edge)
        if i != j:
            adjacency[i].add(j)
            adjacency[j].add(i)
    degree = np.array([len(a) for a in adjacency])
    k = 1 + (int(degree.max()) if n else 0)
    nbr = np.tile(np.arange(n)[:, None], (1, k))  # padding points at self, weight 0
    w = np.zeros((n, k))
    for i in range(n):
        for slot, j in enumerate(sorted(adjacency[i]), start=1):
            nbr[i, slot] = j
            if rule == "metropolis":
                w[i, slot] = 1.0 / (max(degree[i], degree[j]) + 1)
            else:
                w[i, slot] = 1.0 / (degree[i] + 1)
        w[i, 0] = 1.0 - w[i, 1:].sum()
    return nbr, w


Step = dict[tuple[int, int], float]  # the off-diagonal weights W[i, j] of one step


def lists_from_steps(n: int, steps: list[Step]) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``(T, n, k)`` neighbour lists of steps given as ``{(i, j): W[i, j]}`` dicts.

    Slot 0 holds each worker's self weight (``1 -`` its row's off-diagonal sum),
    padding points at the worker itself with weight 0.
    """
    degrees = [Counter(i for i, _ in step) for step in steps]
    width = 1 + max((max(d.values(), default=0) for d in degrees), default=0)
    nbr = np.tile(np.arange(n)[None, :, None], (len(steps), 1, width))
    w = np.zeros(nbr.shape)
    for t, step in enumerate(steps):
        used = np.ones(n, int)
        for (i, j), weight in sorted(step.items()):
            nbr[t, i, used[i]], w[t, i, used[i]] = j, weight
            used[i] += 1
        w[t, :, 0] = 1.0 - w[t, :, 1:].sum(axis=1)
    return nbr, w


def from_neighbor_lists(
    neighbors, weights, *, name: str = "graph", check_connected: bool = True
) -> Topology:
    """A topology from padded neighbour lists: ``W_t[i, neighbors[t, i, k]] += weights[t, i, k]``.

    Args:
      neighbors: integer indices of shape ``(n, k)`` or ``(T, n, k)`` (time-varying).
      weights: non-negative weights of the same shape; rows and columns of
        every ``W_t`` sum to 1. Pad unused slots with weight 0.
      name: a label for tables and plots.
      check_connected: require the graph (its union over a period) to be connected.

    Examples:
      >>> import decjax
      >>> pair = decjax.topology.from_neighbor_lists([[0, 1], [1, 0]], [[0.5, 0.5], [0.5, 0.5]])
      >>> pair.matrix().tolist()
      [[0.5, 0.5], [0.5, 0.5]]
    """
    nbr = np.asarray(neighbors)
    w = np.asarray(weights, dtype=np.float64)
    if nbr.ndim == 2:
        nbr, w = nbr[None], w[None]
    if nbr.ndim != 3 or nbr.shape != w.shape or nbr.shape[1] < 1:
        raise ValueError(
            "neighbors and weights must have the same shape (n, k) or (T, n, k), "
            f"got {np.shape(neighbors)} and {np.shape(weights)}"
        )
    if not np.issubdtype(nbr.dtype, np.integer):
        raise TypeError(f"neighbors must be integers, got dtype {nbr.dtype}")
    n = nbr.shape[1]
    if nbr.min() < 0 or nbr.max() >= n:
        raise ValueError(
            f"neighbors must be indices in [0, {n}), got range [{nbr.min()}, {nbr.max()}]"
        )
    check_sparse("weights", nbr, w, connected=check_connected)
    return Sparse(
        n=n,
        period=nbr.shape[0],
        name=name,
        neighbors=jnp.asarray(nbr, jnp.int32),
        weights=as_weights(w),
    )


def from_edges(n: int, edges, *, weights: str = "metropolis", name: str = "graph") -> Topology:
    """A static topology from an undirected edge list with a weight rule."""
    n = check_int("n", n, minimum=1)
    check_choice("weights", weights, WEIGHT_RULES)
    nbr, w = _neighbor_lists(n, edges, weights)
    _explain_uniform_failure(weights, w, nbr)
    return from_neighbor_lists(nbr, w, name=name)


def _explain_uniform_failure(rule, w, nbr) -> None:
    if rule != "uniform":
        return
    n = nbr.shape[0]
    col = np.zeros(n)
    np.add.at(col, nbr.ravel(), w.ravel())
    if np.max(np.abs(col - 1)) > 1e-9:
        raise ValueError(
            "weights='uniform' is doubly stochastic only on regular graphs; this graph "
            "is irregular, use weights='metropolis'"
        )


def torus(rows: int, cols: int, *, weights: str = "metropolis") -> Topology:
    """2-D torus (grid with wrap-around): worker ``(r, c)`` talks to ``(r±1, c)`` and ``(r, c±1)``.

    Worker index is ``r * cols + c``. On a regular graph Metropolis–Hastings
    equals uniform weights (1/5 for ``rows, cols >= 3``).

    Examples:
      >>> import decjax
      >>> decjax.torus(4, 4).max_degree()
      4
    """
    rows = check_int("rows", rows, minimum=1)
    cols = check_int("cols", cols, minimum=1)
    idx = np.arange(rows * cols).reshape(rows, cols)
    edges = list(zip(idx.ravel(), np.roll(idx, -1, axis=0).ravel(), strict=True))
    edges += list(zip(idx.ravel(), np.roll(idx, -1, axis=1).ravel(), strict=True))
    return from_edges(rows * cols, edges, weights=weights, name=f"torus{rows}x{cols}")


def grid(rows: int, cols: int, *, weights: str = "metropolis") -> Topology:
    """2-D grid without wrap-around (Metropolis–Hastings weights by default).

    Examples:
      >>> import decjax
      >>> decjax.grid(2, 3).n
      6
    """
    rows = check_int("rows", rows, minimum=1)
    cols = check_int("cols", cols, minimum=1)
    idx = np.arange(rows * cols).reshape(rows, cols)
    edges = list(zip(idx[:-1].ravel(), idx[1:].ravel(), strict=True))
    edges += list(zip(idx[:, :-1].ravel(), idx[:, 1:].ravel(), strict=True))
    return from_edges(rows * cols, edges, weights=weights, name=f"grid{rows}x{cols}")


def star(n: int) -> Topology:
    """Star: worker 0 is the hub. Metropolis–Hastings weights ``1/n`` per edge.

    The hub keeps ``1/n`` of its own model, each leaf ``1 - 1/n``; spectral gap ``1/n``.

    Examples:
      >>> import decjax
      >>> round(float(decjax.star(4).matrix()[1, 1]), 4)
      0.75
    """
    n = check_int("n", n, minimum=1)
    return from_edges(n, [(0, j) for j in range(1, n)], name="star")


def hypercube(n: int) -> Topology:
    """Hypercube: ``i`` talks to ``i XOR 2^j`` for each bit ``j``; weights ``1/(log2 n + 1)``.

    Args:
      n: number of workers, a power of two.

    Examples:
      >>> import decjax
      >>> decjax.hypercube(8).max_degree()
      3
    """
    n = check_int("n", n, minimum=1)
    if not is_power_of_two(n):
        raise ValueError(f"n must be a power of two for hypercube, got {n}")
    bits = n.bit_length() - 1
    edges = [(i, i ^ (1 << b)) for i in range(n) for b in range(bits)]
    return from_edges(n, edges, name="hypercube")


def erdos_renyi(
    n: int, p: float, *, key, weights: str = "metropolis", max_tries: int = 100
) -> Topology:
    """Connected Erdős–Rényi graph ``G(n, p)`` with Metropolis–Hastings weights.

    Graphs are drawn until one is connected (at most ``max_tries``).

    Args:
      n: number of workers.
      p: edge probability in ``(0, 1]``.
      key: a ``jax.random.key`` (or an int seed); same key, same graph.

    Examples:
      >>> import jax, decjax
      >>> decjax.erdos_renyi(16, 0.3, key=jax.random.key(0)).n
      16
    """
    n = check_int("n", n, minimum=1)
    check_in_range("p", p, 0.0, 1.0, closed="right")
    max_tries = check_int("max_tries", max_tries, minimum=1)
    import networkx as nx  # here, not at the top: it would cost `import decjax` 0.15 s

    rng = numpy_rng(key)
    for _ in range(max_tries):
        upper = np.triu(rng.random((n, n)) < p, k=1)
        graph = nx.from_numpy_array(upper.astype(int))
        if nx.is_connected(graph):
            return from_edges(n, graph.edges(), weights=weights, name=f"erdos_renyi(p={p:g})")
    raise ValueError(
        f"p={p!r} is too small: no connected G({n}, p) in max_tries={max_tries} draws; "
        "increase p (connectivity needs p > ln(n)/n roughly)"
    )


def random_matching(n: int, *, key, period: int | None = None) -> Topology:
    """Time-varying random perfect matchings: ``W_t = (I + P_t) / 2``.

    At each step of the period, workers are paired uniformly at random and each
    pair averages (with odd ``n`` one worker sits out). The period (default
    ``max(1, 2 ceil(log2 n))``) is redrawn until its union graph is connected.

    Examples:
      >>> import jax, decjax
      >>> decjax.random_matching(8, key=jax.random.key(0)).max_degree()
      1
    """
    n = check_int("n", n, minimum=1)
    if period is None:
        period = max(1, 2 * (n - 1).bit_length())
    period = check_int("period", period, minimum=1)
    import networkx as nx

    rng = numpy_rng(key)
    for _ in range(100):
        nbr = np.tile(np.arange(n)[None, :, None], (period, 1, 2))
        for t in range(period):
            perm = rng.permutation(n)
            for a, b in zip(perm[0::2], perm[1::2], strict=False):
                nbr[t, a, 1], nbr[t, b, 1] = b, a
        w = np.where(nbr[..., 1:] == np.arange(n)[None, :, None], 0.0, 0.5)
        w = np.concatenate([1.0 - w, w], axis=-1)
        union = nx.Graph()
        union.add_nodes_from(range(n))
        union.add_edges_from(
            zip(np.repeat(np.arange(n), period), nbr[..., 1].T.ravel(), strict=True)
        )
        if nx.is_connected(union):
            return from_neighbor_lists(nbr, w, name="random_matching")
    raise ValueError(f"period={period} is too short for random matchings to connect {n} workers")


def from_matrix(
    matrix,
    *,
    name: str = "matrix",
    require_doubly_stochastic: bool = True,
    require_connected: bool = True,
    allow_negative: bool = False,
) -> Topology:
    """A topology from one ``(n, n)`` mixing matrix or a ``(T, n, n)`` stack (time-varying).

    ``matrix[t][i, j]`` is the weight worker ``i`` puts on worker ``j`` at step ``t``.

    Args:
      matrix: array-like of shape ``(n, n)`` or ``(T, n, n)``.
      name: a label for tables and plots.
      require_doubly_stochastic: rows and columns must sum to 1 (then gossip
        preserves the worker average). Opt out explicitly for e.g. push-sum.
      require_connected: the graph of non-zero weights (its union over a
        period) must be connected.
      allow_negative: permit negative weights.

    Examples:
      >>> import numpy as np, decjax
      >>> decjax.from_matrix(np.full((4, 4), 0.25)).n
      4
    """
    try:
        w = np.asarray(matrix)
    except ValueError:  # ragged nested lists
        raise TypeError("matrix must be a rectangular array of real numbers") from None
    if not (np.issubdtype(w.dtype, np.number) or w.dtype == bool) or np.iscomplexobj(w):
        raise TypeError(f"matrix must be an array of real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2] or w.shape[1] < 1:
        raise ValueError(f"matrix must have shape (n, n) or (T, n, n), got {np.shape(matrix)}")
    check_matrix_stack(
        "matrix",
        w,
        doubly_stochastic=require_doubly_stochastic,
        nonnegative=not allow_negative,
        connected=require_connected,
    )
    return Dense(
        n=w.shape[1],
        period=w.shape[0],
        name=name,
        weights=as_weights(w),
        row_stochastic=bool(np.all(np.abs(w.sum(axis=2) - 1.0) <= STOCHASTIC_ATOL)),
        column_stochastic=bool(np.all(np.abs(w.sum(axis=1) - 1.0) <= STOCHASTIC_ATOL)),
    )
