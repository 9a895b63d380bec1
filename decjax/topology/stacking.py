"""Stacking topologies on a leading batch axis, for sweeps that ``vmap`` over them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from decjax.topology.base import Topology
from decjax.topology.kinds import Dense, Sparse


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
    if any(t.random for t in topologies):
        raise ValueError(
            "random topologies (a fresh matrix per step) cannot be stacked; sweep their keys "
            "by building one per run"
        )
    if any(t.batch_shape for t in topologies):
        raise ValueError("topologies are already stacked; stack single topologies")
    kinds_of = {(t.row_stochastic, t.column_stochastic) for t in topologies}
    if len(kinds_of) > 1:
        raise ValueError(
            "topologies of different stochasticity cannot be stacked (a doubly stochastic graph "
            "with a push-sum or row-stochastic one: an algorithm that fits one misreads the "
            "other); sweep them separately"
        )
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
        "column_stochastic": all(t.column_stochastic for t in topologies),
    }
    if all(t.has_lists for t in topologies):
        neighbors, weights = _stacked_lists(topologies, period)
        return Sparse(weights=weights, neighbors=neighbors, **common)
    mats = [jnp.tile(t.matrices(), (period // t.period, 1, 1)) for t in topologies]
    return Dense(weights=jnp.stack(mats), **common)


def _stacked_lists(topologies: Sequence[Topology], period: int) -> tuple[jax.Array, jax.Array]:
    """``(B, T, n, k)`` neighbour lists and weights, padded with weight-0 self entries."""
    lists = []
    for t in topologies:
        nbr, w = (np.asarray(jax.device_get(a)) for a in t.lists())
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
