"""Neighbour lists as matrices and as edge lists: the storage helpers the kinds share."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Edges(NamedTuple):
    """Messages of one phase as an edge list (see :meth:`Topology.link_loads`)."""

    receivers: jax.Array  # (E,) int32
    senders: jax.Array  # (E,) int32
    bytes: jax.Array  # (E,) float32; 0: no message (padding)


def row_edges(peers: jax.Array, loads: jax.Array, *, receivers_first: bool = True) -> Edges:
    """An edge list from ``(n, K)`` lists of each worker's peers and the bytes on each slot.

    ``receivers_first``: row ``i`` lists whom ``i`` receives from (else whom it
    sends to). Several slots of one row naming the same peer are merged into one
    message carrying their summed bytes (``O(n K log K)``: a sort per row), so
    every link appears once.
    """
    n, k = peers.shape
    loads = jnp.asarray(loads, jnp.float32)
    if k > 1:
        peers, loads = _merge_duplicates(peers, loads)
    rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, k)).reshape(-1)
    peers = peers.astype(jnp.int32).reshape(-1)
    if receivers_first:
        return Edges(rows, peers, loads.reshape(-1))
    return Edges(peers, rows, loads.reshape(-1))


def _merge_duplicates(peers: jax.Array, loads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per row, each distinct peer once: the first slot of a run of equal peers (after a
    sort) carries the run's summed load, the others 0."""
    n, k = peers.shape
    order = jnp.argsort(peers, axis=1, stable=True)
    peers = jnp.take_along_axis(peers, order, axis=1)
    loads = jnp.take_along_axis(loads, order, axis=1)
    first = jnp.concatenate([jnp.ones((n, 1), bool), peers[:, 1:] != peers[:, :-1]], axis=1)
    run = jnp.cumsum(first, axis=1) - 1
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, k))
    sums = jnp.zeros((n, k), loads.dtype).at[rows, run].add(loads)
    return peers, jnp.where(first, jnp.take_along_axis(sums, run, axis=1), 0.0)


def dense_from_lists(n: int, nbr: jax.Array, w: jax.Array, push: bool = False) -> jax.Array:
    """``(T, n, n)`` matrices from ``(T, n, k)`` neighbour lists and weights (self weight implicit).

    The diagonal is set to ``1 - sum`` of the off-diagonal weights of the row
    (of the column for a ``push`` topology), matching the difference form in
    which gossip evaluates neighbour lists.
    """
    period = nbr.shape[0]
    rows = jnp.broadcast_to(jnp.arange(n)[None, :, None], nbr.shape)
    steps = jnp.broadcast_to(jnp.arange(period)[:, None, None], nbr.shape)
    off = jnp.where(nbr == rows, 0.0, w)
    dense = jnp.zeros((period, n, n), w.dtype).at[steps, rows, nbr].add(off)
    diagonal = 1.0 - jnp.sum(dense, axis=1 if push else 2)
    return dense + jnp.eye(n, dtype=w.dtype)[None] * diagonal[:, :, None]


def numpy_from_lists(n: int, nbr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Host-side float64 ``(T, n, n)`` matrices from ``(T, n, k)`` lists (weights as stored)."""
    out = np.zeros((nbr.shape[0], n, n))
    steps, rows = np.indices(nbr.shape)[:2]
    np.add.at(out, (steps, rows, nbr), w)
    return out
