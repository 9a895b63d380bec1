"""Edge weights as parameters: a graph's symmetric doubly stochastic ``W`` as a function of
``theta``, and objectives of ``W`` to minimise (see :mod:`decjax.learn`, which optimises
them, also through a simulated training run).

A graph's edge weights become a parameter vector ``theta`` (one logit per
edge and per self-loop) mapped to a **symmetric doubly stochastic** ``W`` by
a symmetric softmax:

.. math::

   W_{ij} = \\frac{e^{\\theta_{ij}}}{\\max(Z_i, Z_j)}, \\qquad
   Z_i = e^{\\theta_{ii}} + \\sum_{j \\sim i} e^{\\theta_{ij}}, \\qquad
   W_{ii} = 1 - \\sum_{j \\ne i} W_{ij} \\ge e^{\\theta_{ii}} / Z_i > 0,

so every ``theta`` is feasible (no projection) and ``theta = log W`` gives
back any symmetric doubly stochastic ``W`` on the graph (Metropolis–Hastings
is the default start).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from decjax._validation import check_int, check_nonnegative
from decjax.topology import kinds
from decjax.topology.base import STOCHASTIC_ATOL, Topology
from decjax.topology.graphs import from_matrix
from decjax.topology.optimal import graph_edges

Objective = Callable[[jax.Array], jax.Array]  # W (n, n) -> scalar


class EdgeWeights:
    """The symmetric-softmax parametrisation of a graph's mixing weights.

    Attributes:
      n: number of workers.
      edges: ``(m, 2)`` int array of the undirected edges ``i < j``.

    Examples:
      >>> import networkx as nx, decjax
      >>> p = decjax.learn.EdgeWeights(nx.cycle_graph(5))
      >>> w = p.matrix(p.metropolis())
      >>> [round(v, 4) for v in w[0].tolist()]  # the ring's Metropolis-Hastings weights
      [0.3333, 0.3333, 0.0, 0.0, 0.3333]
    """

    def __init__(self, graph):
        n, edges = graph_edges(graph)
        if not edges:
            raise ValueError("graph must have at least one edge between distinct workers")
        import networkx as nx

        support = nx.Graph(edges)
        support.add_nodes_from(range(n))
        components = nx.number_connected_components(support)
        if components > 1:
            raise ValueError(
                f"graph must be connected: its {n} workers form {components} components, and "
                "no weights on it reach consensus"
            )
        self.n = n
        self.edges = np.asarray(edges, np.int32)

    @property
    def size(self) -> int:
        """Length of ``theta``: one logit per edge, then one per self-loop."""
        return len(self.edges) + self.n

    def matrix(self, theta: jax.Array) -> jax.Array:
        """The ``(n, n)`` symmetric doubly stochastic ``W`` of ``theta`` (jit- and grad-able)."""
        theta = jnp.asarray(theta)
        if theta.shape != (self.size,):
            raise ValueError(f"theta must have shape ({self.size},), got {theta.shape}")
        i, j = self.edges[:, 0], self.edges[:, 1]
        edge = jnp.exp(theta[: len(self.edges)])
        totals = jnp.exp(theta[len(self.edges) :])
        totals = totals.at[i].add(edge).at[j].add(edge)
        w_edge = edge / jnp.maximum(totals[i], totals[j])
        off = jnp.zeros((self.n, self.n), theta.dtype).at[i, j].set(w_edge).at[j, i].set(w_edge)
        return off + jnp.diag(1.0 - off.sum(axis=1))

    def from_matrix(self, matrix) -> jax.Array:
        """``theta = log W`` on the edges and diagonal (exact for a symmetric doubly
        stochastic ``W`` with a positive diagonal supported on the graph)."""
        w = np.asarray(matrix, np.float64)
        if w.shape != (self.n, self.n) or not np.isfinite(w).all():
            raise ValueError(f"matrix must be a finite ({self.n}, {self.n}) array, got {w.shape}")
        support = np.zeros((self.n, self.n), bool)
        support[self.edges[:, 0], self.edges[:, 1]] = support[
            self.edges[:, 1], self.edges[:, 0]
        ] = 1
        np.fill_diagonal(support, True)
        rule = STOCHASTIC_ATOL
        if (
            np.abs(w - w.T).max() > rule
            or np.abs(w.sum(axis=1) - 1).max() > rule
            or np.abs(w[~support]).max(initial=0.0) > rule
        ):
            raise ValueError(
                "matrix must be symmetric and doubly stochastic on the graph's edges (rows "
                f"summing to 1 within {rule}, zero off the graph): only such a W has a theta"
            )
        values = np.concatenate([w[self.edges[:, 0], self.edges[:, 1]], np.diag(w)])
        if np.any(values <= 0):
            raise ValueError("matrix must be positive on every edge and on the diagonal")
        return jnp.asarray(np.log(values))

    def metropolis(self) -> jax.Array:
        """``theta`` of the Metropolis–Hastings weights of the graph."""
        degree = np.bincount(self.edges.ravel(), minlength=self.n)
        w = np.zeros((self.n, self.n))
        for i, j in self.edges:
            w[i, j] = w[j, i] = 1.0 / (max(degree[i], degree[j]) + 1)
        w[np.diag_indices(self.n)] = 1.0 - w.sum(axis=1)
        return self.from_matrix(w)

    def topology(self, theta, name: str = "learned") -> Topology:
        """A validated (concrete) topology of ``theta``'s matrix."""
        return from_matrix(np.asarray(self.matrix(theta), np.float64), name=name)


def traced_topology(matrix: jax.Array, name: str = "learned") -> Topology:
    """A dense topology holding a (possibly traced) ``(n, n)`` matrix, for use inside ``grad``.

    Only its shape is checked (the matrix may be a tracer); use :class:`EdgeWeights`
    so that it is doubly stochastic by construction.
    """
    if jnp.ndim(matrix) != 2 or jnp.shape(matrix)[0] != jnp.shape(matrix)[1]:
        raise ValueError(f"matrix must be an (n, n) matrix, got shape {jnp.shape(matrix)}")
    return kinds.Dense(n=matrix.shape[-1], period=1, name=name, weights=matrix[None])


def consensus_objective(x0: jax.Array, rounds: int) -> Objective:
    """``||W^k x_0 - mean||^2 / ||x_0 - mean||^2`` after ``rounds`` gossip rounds."""
    rounds = check_int("rounds", rounds, minimum=1)
    x0 = jnp.asarray(x0)
    centred = x0 - x0.mean(axis=0, keepdims=True)
    if x0.ndim < 1 or not bool(jnp.all(jnp.isfinite(x0))) or float(jnp.sum(centred**2)) == 0:
        raise ValueError(
            "x0 must be finite, stacked over workers, and not already at consensus (the "
            "objective divides by its disagreement)"
        )

    def objective(w):
        x = centred
        for _ in range(rounds):
            x = jnp.matmul(w, x, precision=jax.lax.Precision.HIGHEST)
        return jnp.sum(x**2) / jnp.sum(centred**2)

    return objective


def heterogeneity_objective(proportions, *, regularization: float = 0.1) -> Objective:
    r"""STL-FW's objective (Le Bars et al., AISTATS 2023) for label proportions ``Pi``:

    .. math:: \frac1n \lVert W \Pi - \mathbf{1}\bar\pi^\top \rVert_F^2
              + \frac{\lambda}{n} \lVert W - \tfrac1n \mathbf{1}\mathbf{1}^\top \rVert_F^2,

    the heterogeneity left after one gossip step (how far each worker's mixed
    label distribution is from the global one) plus a pull towards averaging.
    ``proportions`` is ``(n, classes)``: row ``i`` the class frequencies of
    worker ``i``'s data (see :func:`label_proportions`).
    """
    check_nonnegative("regularization", regularization)
    pi = jnp.asarray(proportions)
    if pi.ndim != 2 or not bool(jnp.all(jnp.isfinite(pi))) or bool(jnp.any(pi < 0)):
        raise ValueError(
            f"proportions must be a finite, non-negative (n, classes) array of class "
            f"frequencies (label_proportions), got shape {pi.shape}"
        )
    mean = pi.mean(axis=0, keepdims=True)

    def objective(w):
        n = w.shape[0]
        mixed = jnp.matmul(w, pi, precision=jax.lax.Precision.HIGHEST)
        spread = jnp.sum((mixed - mean) ** 2) / n
        return spread + regularization * jnp.sum((w - 1.0 / n) ** 2) / n

    return objective


def neighbourhood_heterogeneity(w, proportions) -> float:
    r"""Le Bars et al.'s neighbourhood heterogeneity (AISTATS 2023) of a mixing matrix for
    label proportions ``Pi`` (``(n, classes)``, :func:`label_proportions`):

    .. math:: \frac1n \lVert W \Pi - \mathbf{1}\bar\pi^\top \rVert_F^2,

    how far each worker's neighbourhood-averaged label distribution is from the global
    one: 0 on the complete graph, the workers' own spread with no communication
    (the first term of :func:`heterogeneity_objective`). ``w``: a ``Topology`` (its
    first matrix) or an ``(n, n)`` matrix.

    Examples:
      >>> import numpy as np, decjax
      >>> pi = np.eye(4)  # one class per worker
      >>> round(neighbourhood_heterogeneity(decjax.complete(4), pi), 6)
      0.0
      >>> round(neighbourhood_heterogeneity(np.eye(4), pi), 4)  # alone: 1 - 1/4
      0.75
    """
    if isinstance(w, Topology):
        w = w.numpy_matrices()[0]
    w = np.asarray(w, np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"w must be a Topology or a square (n, n) matrix, got {w.shape}")
    heterogeneity_objective(proportions)  # validates them
    pi = np.asarray(proportions, np.float64)
    if pi.shape[0] != w.shape[0]:
        raise ValueError(f"proportions has {pi.shape[0]} rows and w is {w.shape[0]} x {w.shape[0]}")
    return float(np.sum((w @ pi - pi.mean(axis=0)) ** 2) / w.shape[0])  # float64


def neighbors_objective(gamma: float) -> Objective:
    r"""``-n_W(gamma)``, the effective number of neighbours (Vogels et al. 2022) to maximise.

    For a symmetric ``W`` the series of :func:`decjax.effective_neighbors` sums to
    :math:`v = \frac1n \operatorname{tr}\bigl(W^2 (I - \gamma W^2)^{-1}\bigr)`
    (eigenvalue by eigenvalue, :math:`\lambda^2 / (1 - \gamma \lambda^2)`), a linear
    solve with no eigendecomposition, so the gradient is defined even where
    eigenvalues repeat (a ring's do); :math:`n_W = 1 / ((1 - \gamma) v)`.
    """
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")

    def objective(w):
        n = w.shape[0]
        square = jnp.matmul(w, w, precision=jax.lax.Precision.HIGHEST)
        variance = jnp.trace(jnp.linalg.solve(jnp.eye(n, dtype=w.dtype) - gamma * square, square))
        return -1.0 / ((1.0 - gamma) * variance / n)

    return objective


def label_proportions(labels, classes: int) -> np.ndarray:
    """``(n, classes)`` class frequencies of stacked per-worker labels ``(n, m)``."""
    classes = check_int("classes", classes, minimum=1)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer labels stacked (n, m), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must be in [0, {classes}), got {labels.min()}..{labels.max()}")
    if labels.shape[1] == 0:
        raise ValueError("every worker needs at least one label, got m = 0")
    counts = np.stack([np.bincount(row, minlength=classes) for row in labels])
    return counts / counts.sum(axis=1, keepdims=True)
