"""The :class:`Topology` pytree: who averages with whom, with which weight, at step ``t``.

Convention (used everywhere in decjax): ``W[i, j]`` is the weight worker ``i``
puts on worker ``j``'s model, so one gossip step is ``x_i <- sum_j W[i, j] x_j``,
i.e. ``X <- W X`` with workers stacked on axis 0.

A topology keeps the one representation that makes gossip cheap and can always
produce the dense matrix for analysis:

``"average"``
    ``W_t = (1 - a_t) I + a_t 11^T/n`` (complete graph ``a = 1``, no
    communication ``a = 0``, periodic averaging). Gossip costs ``O(n d)``.
``"shift"``
    circulant ``W_t = sum_k w_{t,k} P^{o_{t,k}}`` with static offsets
    ``o_{t,k}`` (ring, exponential graphs). Gossip is a sum of rolls, ``O(k n d)``.
``"sparse"``
    padded neighbour lists: ``W_t[i, nbr[t, i, k]] = w[t, i, k]`` (any graph).
    Gossip is a gather, ``O(k n d)``.
``"dense"``
    the stack of matrices ``(T, n, n)`` (any matrix; also what sweeps over
    topologies vmap). Gossip is one matmul at ``precision=HIGHEST``.

Time-varying topologies hold a period ``T`` and per-step weights; step ``t``
uses entry ``t mod T``, selected inside ``jit`` without recompiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

REPRESENTATIONS = ("average", "shift", "sparse", "dense")

# The backends each representation can be mixed with, cheapest first. A
# representation converts only "downward" (to a more general one) inside jit.
BACKENDS_FOR = {
    "average": ("average", "shift", "sparse", "dense"),
    "shift": ("shift", "sparse", "dense"),
    "sparse": ("sparse", "dense"),
    "dense": ("dense",),
}

# Tolerance for row/column sums of a doubly stochastic matrix given in float32.
STOCHASTIC_ATOL = 1e-5


@jax.tree_util.register_pytree_node_class
class Topology:
    """Mixing weights of a (possibly time-varying) communication graph.

    Build one with the constructors in :mod:`decjax.topology` (``ring``,
    ``exponential``, ``from_matrix``...), not with this class directly: they
    validate. A ``Topology`` is a pytree, so it can be passed into ``jit`` and
    stacked topologies (see :func:`decjax.topology.stack`) can be ``vmap``-ed.

    Attributes:
      n: number of workers.
      period: number of distinct steps ``T`` (1 for a static graph).
      name: a short human-readable name, e.g. ``"ring"``.
      representation: one of ``"average"``, ``"shift"``, ``"sparse"``, ``"dense"``.
      offsets: for ``"shift"``: a static tuple (one entry per step) of tuples
        of offsets ``o`` with ``W[i, (i + o) mod n] = w``.
      weights: per-step weights; shape ``(T,)`` (average), ``(T, k)`` (shift),
        ``(T, n, k)`` (sparse) or ``(T, n, n)`` (dense).
      neighbors: for ``"sparse"``: int32 indices ``(T, n, k)``.
      faults: ``None``, or a :class:`decjax.topology.faults.FaultModel` (random
        link and node failures realized per step; see ``with_faults``).
      row_stochastic: every row sums to one (within ``STOCHASTIC_ATOL``), so
        gossip runs in the exact difference form
        ``x_i + sum_{j != i} W_ij (x_j - x_i)`` and the stored self weight is
        never read. ``False`` only for matrices built with
        ``from_matrix(..., require_doubly_stochastic=False)`` whose rows do not
        sum to one; those are mixed as the plain product ``W x``.
    """

    def __init__(
        self,
        *,
        n: int,
        period: int,
        name: str,
        representation: str,
        weights: Any,
        offsets: tuple[tuple[int, ...], ...] | None = None,
        neighbors: Any = None,
        faults: Any = None,
        row_stochastic: bool = True,
    ):
        self.n = n
        self.period = period
        self.name = name
        self.representation = representation
        self.weights = weights
        self.offsets = offsets
        self.neighbors = neighbors
        self.faults = faults
        self.row_stochastic = row_stochastic

    # -- pytree protocol ------------------------------------------------------
    def tree_flatten(self):
        children = (self.weights, self.neighbors, self.faults)
        aux = (
            self.n,
            self.period,
            self.name,
            self.representation,
            self.offsets,
            self.row_stochastic,
        )
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        n, period, name, representation, offsets, row_stochastic = aux
        weights, neighbors, faults = children
        return cls(
            row_stochastic=row_stochastic,
            n=n,
            period=period,
            name=name,
            representation=representation,
            weights=weights,
            offsets=offsets,
            neighbors=neighbors,
            faults=faults,
        )

    def __repr__(self) -> str:
        tv = f", period={self.period}" if self.period > 1 else ""
        faulty = ", with faults" if self.faults is not None else ""
        return (
            f"Topology({self.name}, n={self.n}{tv}, representation={self.representation!r}{faulty})"
        )

    # -- queries --------------------------------------------------------------
    @property
    def is_time_varying(self) -> bool:
        return self.period > 1

    @property
    def backends(self) -> tuple[str, ...]:
        """Gossip backends this topology can be mixed with (cheapest first)."""
        return BACKENDS_FOR[self.representation]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes of a stacked topology (:func:`stack`); ``()`` for one topology."""
        per_step = {"average": 1, "shift": 2, "sparse": 3, "dense": 3}[self.representation]
        shape = jnp.shape(self.weights)
        return tuple(shape[: len(shape) - per_step])

    def _unbatched(self, method: str, *args):
        """Apply ``method`` to each topology of a stacked one (vmapped over the batch axes)."""
        fn = lambda topology: getattr(topology, method)(*args)  # noqa: E731
        for _ in self.batch_shape:
            fn = jax.vmap(fn)
        return fn(self)

    def matrices(self) -> jax.Array:
        """All ``T`` dense mixing matrices, shape ``(T, n, n)`` (works under jit).

        For a stacked topology, ``(*batch_shape, T, n, n)``.
        """
        if self.batch_shape:
            return self._unbatched("matrices")
        if isinstance(self.weights, jax.core.Tracer):
            return dense_weights(self)
        return jnp.asarray(self.numpy_matrices(), dtype=jnp.asarray(self.weights).dtype)

    def matrix(self, step: Any = 0) -> jax.Array:
        """The dense ``(n, n)`` matrix ``W_t`` used at ``step`` (``t = step mod T``).

        With faults, the matrix realized at ``step`` (failed links and nodes removed).
        For a stacked topology, one matrix per member: ``(*batch_shape, n, n)``.
        """
        if self.batch_shape:
            return self._unbatched("matrix", step)
        if self.faults is not None:
            nbr, w = realized_sparse(self, step)
            return _dense_from_sparse(self.n, nbr[None], w[None])[0]
        return self.matrices()[jnp.asarray(step) % self.period]

    def numpy_matrices(self) -> np.ndarray:
        """``matrices()`` as a float64 numpy array, built on the host (for analysis)."""
        if self.batch_shape:
            return np.asarray(self.matrices(), dtype=np.float64)
        n, period = self.n, self.period
        w = np.asarray(jax.device_get(self.weights), dtype=np.float64)
        if self.representation == "dense":
            return w
        if self.representation == "average":
            return (1.0 - w[:, None, None]) * np.eye(n) + w[:, None, None] / n
        if self.representation == "shift":
            nbr = (np.arange(n)[None, :, None] + np.asarray(self.offsets)[:, None, :]) % n
            w = np.broadcast_to(w[:, None, :], nbr.shape)
        else:
            nbr = np.asarray(jax.device_get(self.neighbors))
        out = np.zeros((period, n, n))
        steps, rows = np.indices(nbr.shape)[:2]
        np.add.at(out, (steps, rows, nbr), w)
        return out

    def max_degree(self) -> int:
        """Largest number of *other* workers any worker receives from at a step."""
        if self.representation == "average":
            return 0 if not np.any(np.asarray(self.weights)) else self.n - 1
        if self.representation == "shift":
            return max(sum(1 for o in offs if o % self.n) for offs in self.offsets)
        if self.representation == "sparse":
            nbr = np.asarray(self.neighbors)
            w = np.asarray(self.weights)
            own = nbr == np.arange(self.n)[None, :, None]
            return int(((w != 0) & ~own).sum(axis=-1).max())
        w = np.asarray(self.weights)
        off = (w != 0) & ~np.eye(self.n, dtype=bool)[None]
        return int(off.sum(axis=-1).max())


# -- conversions usable inside jit ----------------------------------------------


def shift_form(topology: Topology) -> tuple[tuple[tuple[int, ...], ...], jax.Array]:
    """Offsets and ``(T, k)`` weights of a circulant (``average`` or ``shift``) topology."""
    if topology.representation == "shift":
        return topology.offsets, topology.weights
    if topology.representation == "average":
        n = topology.n
        a = topology.weights[:, None]
        offsets = tuple(tuple(range(n)) for _ in range(topology.period))
        base = jnp.zeros((n,), a.dtype).at[0].set(1.0)
        return offsets, (1.0 - a) * base[None, :] + a / n
    raise ValueError(f"a {topology.representation!r} topology has no shift form")


def sparse_form(topology: Topology) -> tuple[jax.Array, jax.Array]:
    """Neighbour indices ``(T, n, k)`` and weights ``(T, n, k)``."""
    if topology.representation == "sparse":
        return topology.neighbors, topology.weights
    offsets, weights = shift_form(topology)
    n = topology.n
    idx = (np.arange(n)[None, :, None] + np.asarray(offsets)[:, None, :]) % n
    w = jnp.broadcast_to(weights[:, None, :], idx.shape)
    return jnp.asarray(idx, jnp.int32), w


def dense_weights(topology: Topology) -> jax.Array:
    """The ``(T, n, n)`` stack of mixing matrices."""
    if topology.representation == "dense":
        return topology.weights
    n = topology.n
    if topology.representation == "average":
        a = topology.weights[:, None, None]
        return (1.0 - a) * jnp.eye(n)[None] + a / n
    nbr, w = sparse_form(topology)
    return _dense_from_sparse(n, nbr, w)


def _dense_from_sparse(n: int, nbr: jax.Array, w: jax.Array) -> jax.Array:
    """``(T, n, n)`` matrices from ``(T, n, k)`` neighbour lists and weights (self weight implicit).

    The diagonal is set to ``1 - sum`` of the off-diagonal weights, matching the
    difference form in which gossip evaluates sparse topologies.
    """
    period = nbr.shape[0]
    rows = jnp.broadcast_to(jnp.arange(n)[None, :, None], nbr.shape)
    steps = jnp.broadcast_to(jnp.arange(period)[:, None, None], nbr.shape)
    off = jnp.where(nbr == rows, 0.0, w)
    dense = jnp.zeros((period, n, n), w.dtype).at[steps, rows, nbr].add(off)
    return dense + jnp.eye(n, dtype=w.dtype)[None] * (1.0 - off.sum(-1))[:, :, None]


def realized_sparse(topology: Topology, step: Any) -> tuple[jax.Array, jax.Array]:
    """Neighbours ``(n, k)`` and weights ``(n, k)`` used at ``step`` (faults applied)."""
    nbr, w = sparse_form(topology)
    t = jnp.asarray(step) % topology.period
    if topology.faults is None:
        return nbr[t], w[t]
    return topology.faults.realize(nbr[t], w[t], step)


# -- validation (host side, before anything is built) ---------------------------


def check_matrix_stack(
    name: str,
    stack: np.ndarray,
    *,
    doubly_stochastic: bool = True,
    nonnegative: bool = True,
    connected: bool = True,
) -> None:
    """Validate a ``(T, n, n)`` stack of mixing matrices (host side, numpy)."""
    if not np.all(np.isfinite(stack)):
        raise ValueError(f"{name} must be finite")
    if nonnegative and np.any(stack < 0):
        t, i, j = np.argwhere(stack < 0)[0]
        raise ValueError(
            f"{name} must have non-negative weights; W[{i}, {j}] = {stack[t, i, j]:g}"
            + (f" at step {t}" if stack.shape[0] > 1 else "")
        )
    if doubly_stochastic:
        _check_sums(name, stack.sum(axis=2), "row")
        _check_sums(name, stack.sum(axis=1), "column")
    if connected:
        rows, cols = np.nonzero(np.any(stack != 0, axis=0))
        _check_connected(name, stack.shape[-1], rows, cols, stack.shape[0] > 1)


def check_sparse(name: str, neighbors: np.ndarray, weights: np.ndarray, *, connected=True) -> None:
    """Validate padded neighbour lists ``(T, n, k)`` without forming dense matrices."""
    period, n, _ = neighbors.shape
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} weights must be finite")
    if np.any(weights < 0):
        raise ValueError(f"{name} must have non-negative weights")
    _check_sums(name, weights.sum(axis=2), "row")
    col = np.zeros((period, n))
    for t in range(period):
        np.add.at(col[t], neighbors[t].ravel(), weights[t].ravel())
    _check_sums(name, col, "column")
    if connected:
        mask = weights != 0
        rows = np.broadcast_to(np.arange(n)[None, :, None], neighbors.shape)[mask]
        _check_connected(name, n, rows, neighbors[mask], period > 1)


def check_shift(name: str, n: int, offsets, weights: np.ndarray, *, connected=True) -> None:
    """Validate a circulant topology from its offsets and ``(T, k)`` weights."""
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} weights must be finite (no NaN or inf)")
    if np.any(weights < 0):
        raise ValueError(f"{name} must have non-negative weights")
    _check_sums(name, weights.sum(axis=1, keepdims=True), "row")
    if connected and n > 1:
        pairs = zip(offsets, weights, strict=True)
        used = [o % n for offs, w in pairs for o, x in zip(offs, w, strict=True) if x]
        if math.gcd(n, *used) != 1:
            raise ValueError(
                f"{name} must be connected (or its union over a period); offsets "
                f"{sorted(set(used))} do not generate Z_{n}"
            )


def _check_sums(name: str, sums: np.ndarray, kind: str) -> None:
    bad = np.argwhere(np.abs(sums - 1.0) > STOCHASTIC_ATOL)
    if bad.size:
        t, i = bad[0]
        where = f" at step {t}" if sums.shape[0] > 1 else ""
        raise ValueError(
            f"{name} must be doubly stochastic: every {kind} must sum to 1 "
            f"(tolerance {STOCHASTIC_ATOL:g}), but {kind} {i} sums to {sums[t, i]:.6g}{where}"
        )


def _check_connected(name, n, rows, cols, time_varying) -> None:
    if n <= 1:
        return
    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, _ = scipy.sparse.csgraph.connected_components(graph, directed=True, connection="strong")
    if count > 1:
        what = "the union of its graphs over one period" if time_varying else "its graph"
        raise ValueError(f"{name} must be connected, but {what} has {count} components")


def weight_dtype() -> np.dtype:
    """Float64 when ``jax_enable_x64`` is on, else float32: weights follow the precision."""
    return np.dtype(np.float64 if jax.config.jax_enable_x64 else np.float32)


def as_weights(x) -> jax.Array:
    """Weights (computed in float64 on the host) in :func:`weight_dtype`."""
    return jnp.asarray(np.asarray(x, dtype=np.float64), dtype=weight_dtype())


def stack(topologies: Sequence[Topology]) -> Topology:
    """Stack same-size topologies into one ``Topology`` with a leading batch axis.

    The period is the least common multiple of the periods (each topology's
    weights are tiled to it), so the result can be ``jax.vmap``-ed over axis 0,
    e.g. in :func:`decjax.sweep`. Graphs with neighbour lists (shift and sparse
    kinds: rings, exponential graphs, tori, random graphs) are stacked as
    padded neighbour lists, ``(B, T, n, k)`` with ``k`` the largest degree
    (plus self), so a sweep over them costs ``O(n k)`` memory and gossip a
    gather; as soon as one of them is a dense matrix or the complete-graph
    kind, all are stacked as dense ``(B, T, n, n)`` matrices. Either way
    gossip runs in the exact difference form. ``matrix(step)`` of the stack
    has shape ``(B, n, n)``.

    Examples:
      >>> import decjax
      >>> both = decjax.topology.stack([decjax.ring(8), decjax.exponential(8)])
      >>> both.batch_shape, both.representation, both.matrix(0).shape
      ((2,), 'sparse', (2, 8, 8))
    """
    topologies = list(topologies)
    if not topologies or not all(isinstance(t, Topology) for t in topologies):
        raise TypeError("topologies must be a non-empty sequence of Topology")
    if any(t.faults is not None for t in topologies):
        raise ValueError(
            "topologies with faults cannot be stacked (their matrices are random per step); "
            "run them one by one"
        )
    if any(t.batch_shape for t in topologies):
        raise ValueError("topologies are already stacked; stack single topologies")
    sizes = {t.n for t in topologies}
    if len(sizes) != 1:
        raise ValueError(f"topologies must all have the same n to be stacked, got {sorted(sizes)}")
    period = math.lcm(*(t.period for t in topologies))
    name = "stack(" + "+".join(t.name for t in topologies) + ")"
    common = {
        "n": topologies[0].n,
        "period": period,
        "name": name,
        "row_stochastic": all(t.row_stochastic for t in topologies),
    }
    if all(t.representation in ("shift", "sparse") for t in topologies):
        neighbors, weights = _stacked_lists(topologies, period)
        return Topology(representation="sparse", weights=weights, neighbors=neighbors, **common)
    mats = [jnp.tile(t.matrices(), (period // t.period, 1, 1)) for t in topologies]
    return Topology(representation="dense", weights=jnp.stack(mats), **common)


def _stacked_lists(topologies: Sequence[Topology], period: int) -> tuple[jax.Array, jax.Array]:
    """``(B, T, n, k)`` neighbour lists and weights, padded with weight-0 self entries."""
    lists = []
    for t in topologies:
        nbr, w = (np.asarray(jax.device_get(a)) for a in sparse_form(t))
        reps = period // t.period
        lists.append((np.tile(nbr, (reps, 1, 1)), np.tile(w, (reps, 1, 1))))
    k = max(nbr.shape[-1] for nbr, _ in lists)
    n = topologies[0].n
    own = np.broadcast_to(np.arange(n)[None, :, None], (period, n, k))
    neighbors = np.stack(
        [np.concatenate([nbr, own[..., nbr.shape[-1] :]], axis=-1) for nbr, _ in lists]
    )
    weights = np.stack([np.pad(w, ((0, 0), (0, 0), (0, k - w.shape[-1]))) for _, w in lists])
    dtype = topologies[0].weights.dtype
    return jnp.asarray(neighbors, jnp.int32), jnp.asarray(weights, dtype)
