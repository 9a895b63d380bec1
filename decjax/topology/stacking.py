"""Stacking topologies on a leading batch axis, for sweeps that ``vmap`` over them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
    kinds: rings, exponential graphs, tori, random graphs) and the averaging
    kind (the complete graph, ``solo``, periodic averaging) are stacked as
    padded neighbour lists, ``(B, T, n, k)`` with ``k`` the largest degree
    (plus self), with a ``(B, T)`` averaging strength for the averaging
    members, so a sweep over them costs ``O(n k)`` memory and gossip a gather
    plus a mean (the command line's default ring, exponential, complete and
    solo at 16,384 workers; tested); as soon as one of them is a dense matrix,
    all are stacked as dense ``(B, T, n, n)`` matrices. Either way gossip runs
    in the exact difference form. ``matrix(step)`` of the stack has shape
    ``(B, n, n)``.

    Examples:
      >>> import decjax
      >>> both = decjax.topology.stack([decjax.ring(8), decjax.exponential(8)])
      >>> both.batch_shape, both.representation, both.matrix(0).shape
      ((2,), 'sparse', (2, 8, 8))
    """
    topologies = list(topologies)
    if not topologies or not all(isinstance(t, Topology) for t in topologies):
        raise TypeError("topologies must be a non-empty sequence of Topology")
    reasons = [r for r in (t.unstackable() for t in topologies) if r is not None]
    if reasons:
        raise ValueError(reasons[0])
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
    common: dict[str, Any] = {
        "n": topologies[0].n,
        "period": period,
        "name": name,
        "row_stochastic": all(t.row_stochastic for t in topologies),
        "column_stochastic": all(t.column_stochastic for t in topologies),
    }
    exchanges = {e for e in (t.exchange_of_average() for t in topologies) if e is not None}
    if len(exchanges) > 1:
        raise ValueError(
            "topologies whose exact averages travel differently (an all-reduce and all-to-all "
            "sends) cannot be stacked: the clock could time only one; give them the same exchange"
        )
    forms = [t.stack_lists() for t in topologies]
    if all(form is not None for form in forms):
        neighbors, weights, averaging = _stacked_lists(forms, period)
        strength = averaging if np.any(np.asarray(averaging)) else None
        exchange = next(iter(exchanges), "allreduce")
        return Sparse(
            weights=weights, neighbors=neighbors, averaging=strength, exchange=exchange, **common
        )
    if "allreduce" in exchanges:
        raise ValueError(
            "a topology that averages by an all-reduce (complete, periodic_average) cannot "
            "join a stack of dense matrices, which count every message peer to peer: build it "
            "with exchange='all_to_all', or sweep the dense topologies separately"
        )
    mats = [jnp.tile(t.matrices(), (period // t.period, 1, 1)) for t in topologies]
    return Dense(weights=jnp.stack(mats), **common)


def _stacked_lists(forms, period: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(B, T, n, k)`` neighbour lists and weights, padded with weight-0 self entries, and
    the ``(B, T)`` averaging strengths; each form's own period tiled to ``period``."""
    lists = []
    for nbr, w, a in forms:
        nbr, w, a = (np.asarray(jax.device_get(x)) for x in (nbr, w, a))
        reps = period // nbr.shape[0]
        lists.append((np.tile(nbr, (reps, 1, 1)), np.tile(w, (reps, 1, 1)), np.tile(a, reps)))
    k = max(nbr.shape[-1] for nbr, _, _ in lists)
    n = lists[0][0].shape[1]
    own = np.broadcast_to(np.arange(n)[None, :, None], (period, n, k))
    neighbors = np.stack(
        [np.concatenate([nbr, own[..., nbr.shape[-1] :]], axis=-1) for nbr, _, _ in lists]
    )
    weights = np.stack([np.pad(w, ((0, 0), (0, 0), (0, k - w.shape[-1]))) for _, w, _ in lists])
    dtype = forms[0][1].dtype
    averaging = np.stack([a for _, _, a in lists])
    return (
        jnp.asarray(neighbors, jnp.int32),
        jnp.asarray(weights, dtype),
        jnp.asarray(averaging, dtype),
    )
