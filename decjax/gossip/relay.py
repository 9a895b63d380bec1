r"""RelaySum (Vogels et al., 2021): sums relayed over a spanning tree, each term exactly once.

On a tree, worker :math:`i` sends each neighbour :math:`j` its own value plus what it
received last round from its *other* neighbours, with a count of the workers summed:

.. math::

   m^{(t)}_{i \to j} = v^{(t)}_i + \sum_{k \in N_i \setminus j} m^{(t-1)}_{k \to i}, \qquad
   c^{(t)}_{i \to j} = 1 + \sum_{k \in N_i \setminus j} c^{(t-1)}_{k \to i}.

After round :math:`t` (from 0) worker :math:`i` holds
:math:`v_i^{(t)} + \sum_j m^{(t)}_{j \to i} = \sum_{k:\, d(i,k) \le t+1} v_k^{(t + 1 - d(i,k))}`
(every other worker's value once, delayed by its tree distance) and the count of those
terms; after ``diameter`` rounds the count is ``n``. Nothing is ever counted twice: a
tree has one path between two workers.

Messages are stacked per receiver: the inbox ``(n, K, ...)`` holds what each worker
received from its ``K`` (padded) tree neighbours, so the worker axis leads every array
and sharded runs split it like any other state (the routing is a gather over all
workers, an ``all_gather`` under ``shard_map``). With several trees (a topology of
period ``T``, e.g. :func:`~decjax.topology.double_binary_trees`), coordinate ``c`` of
every leaf travels on tree ``c mod T``: each tree carries ``1/T`` of the vector.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._validation import check_int, check_stacked
from decjax.gossip.traffic import TRAFFIC, Links, Traffic
from decjax.topology import Topology
from decjax.topology.trees import tree_diameter, tree_neighbours

COUNT_BYTES = 4  # the int32 count travelling with every message


class Routes(NamedTuple):
    """Where each message goes, for ``T`` trees over ``n`` workers (``K`` slots each).

    ``neighbors[i, r, k]`` is worker ``i``'s ``k``-th neighbour on tree ``r`` and
    ``back[i, r, k]`` the slot that ``i`` holds in that neighbour's list; ``valid`` marks
    the real slots (padding points at ``i`` itself).
    """

    neighbors: jax.Array  # (n, T, K) int32
    back: jax.Array  # (n, T, K) int32
    valid: jax.Array  # (n, T, K) bool
    diameter: int  # rounds until every worker has every term (the largest tree's)


class RelayState(NamedTuple):
    """What each worker received in the last round: messages ``(n, K, ...)`` per leaf and
    counts ``(n, T, K)``."""

    inbox: Any
    counts: jax.Array


def relay_routes(topology: Topology) -> Routes:
    """The routing tables of a topology whose every step is a spanning tree (refused in one
    line otherwise; see :func:`decjax.topology.tree_edges`)."""
    trees = tree_neighbours(topology)
    n, period = topology.n, len(trees)
    width = max(1, max(len(a) for tree in trees for a in tree))
    neighbors = np.tile(np.arange(n)[:, None, None], (1, period, width))
    back = np.zeros((n, period, width), np.int64)
    valid = np.zeros((n, period, width), bool)
    for r, tree in enumerate(trees):
        for i, adjacent in enumerate(tree):
            for k, j in enumerate(adjacent):
                neighbors[i, r, k], back[i, r, k], valid[i, r, k] = j, tree[j].index(i), True
    return Routes(
        neighbors=jnp.asarray(neighbors, jnp.int32),
        back=jnp.asarray(back, jnp.int32),
        valid=jnp.asarray(valid),
        diameter=max(tree_diameter(tree) for tree in trees),
    )


def _check_values(routes: Any, values: Any) -> int:
    """The rows of ``values``, refused unless they are ``n`` stacked floating workers (or this
    member's block of them)."""
    if not isinstance(routes, Routes):
        raise TypeError(f"routes must be a Routes (from relay_routes), got {type(routes).__name__}")
    rows = check_stacked("values", values)
    n = _axis.local_size(routes.valid.shape[0])
    if rows != n:
        raise ValueError(f"values must hold the tree's n={n} workers on axis 0, got {rows}")
    for x in jax.tree.leaves(values):
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            raise TypeError(f"values must be floating-point, got {jnp.result_type(x)}")
    return rows


def relay_init(routes: Routes, values: Any) -> RelayState:
    """Empty inboxes (zero messages, zero counts) for values shaped like ``values``."""
    rows = _check_values(routes, values)
    _, period, width = routes.valid.shape
    inbox = jax.tree.map(lambda x: jnp.zeros((x.shape[0], width, *x.shape[1:]), x.dtype), values)
    return RelayState(inbox, jnp.zeros((rows, period, width), jnp.float32))


def _tree_of(shape: tuple[int, ...], period: int) -> jax.Array | None:
    """Which tree carries each coordinate of a leaf (``c mod T`` in row-major order)."""
    if period == 1:
        return None
    return (jnp.arange(math.prod(shape)) % period).reshape(shape)


def _pick(per_tree: list[jax.Array], which: jax.Array | None) -> jax.Array:
    """Coordinate-wise the value of its own tree (``per_tree[r]`` broadcasts over rows)."""
    if which is None:
        return per_tree[0]
    out = per_tree[0]
    for r in range(1, len(per_tree)):
        out = jnp.where(which == r, per_tree[r], out)
    return out


def _route(routes_local, everyone: jax.Array, r: int) -> jax.Array:
    """``everyone[neighbors[:, r, k], back[:, r, k]]`` for the local receivers, zero on
    padding: what each receiver gets over tree ``r`` (``(b, K, ...)``)."""
    neighbors, back, valid = routes_local
    got = everyone[neighbors[:, r], back[:, r]]
    mask = valid[:, r].reshape(valid.shape[0], valid.shape[2], *([1] * (got.ndim - 2)))
    return jnp.where(mask, got, jnp.zeros((), got.dtype))


def relay_round(routes: Routes, values: Any, state: RelayState) -> tuple[Any, Any, RelayState]:
    """One round: send every neighbour ``value + (received from the others)``, receive.

    Returns ``(totals, counts, state)``: per worker the sum of its own value and the
    messages just received (a tree like ``values``), and per leaf the number of workers
    that sum holds (float32, broadcastable against the leaf: ``(n, 1, ...)`` on one tree;
    with several, each coordinate's count is its own tree's).
    """
    _check_values(routes, values)
    if not isinstance(state, RelayState):
        raise TypeError(f"state must be a RelayState (from relay_init), got {type(state).__name__}")
    local = tuple(_axis.local_rows(a) for a in (routes.neighbors, routes.back, routes.valid))
    period = routes.valid.shape[1]
    valid_f = local[2].astype(jnp.float32)
    sent_counts = valid_f * (1.0 + jnp.sum(state.counts, -1, keepdims=True) - state.counts)
    every_count = _axis.gather_rows(sent_counts)
    counts = jnp.stack([_route(local, every_count[:, r], r) for r in range(period)], axis=1)
    held = 1.0 + jnp.sum(counts, axis=-1)  # (b, T)

    def leaf(x, inbox):
        sent = (x + jnp.sum(inbox, axis=1))[:, None] - inbox  # receivers read real slots only
        everyone = _axis.gather_rows(sent)
        which = _tree_of(x.shape[1:], period)
        received = _pick([_route(local, everyone, r) for r in range(period)], which)
        rows = (-1,) + (1,) * (x.ndim - 1)
        held_leaf = _pick([held[:, r].reshape(rows) for r in range(period)], which)
        return x + jnp.sum(received, axis=1), held_leaf, received

    leaves, treedef = jax.tree.flatten(values)
    out = [leaf(x, b) for x, b in zip(leaves, jax.tree.leaves(state.inbox), strict=True)]
    totals, held_counts, inbox = (
        jax.tree.unflatten(treedef, [o[i] for o in out]) for i in range(3)
    )
    return totals, held_counts, RelayState(inbox, counts)


def relay_average(topology: Topology, values: Any, rounds: int | None = None) -> tuple[Any, Any]:
    """RelaySum averaging of fixed values: ``rounds`` relay rounds (default: the tree's
    diameter), then each worker's sum divided by its count.

    Returns ``(averages, counts)``. After ``diameter`` rounds every count is ``n`` and every
    worker holds the exact average (up to the rounding of ``n - 1`` additions), where
    gossip on the same tree only approaches it geometrically.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> tree = decjax.topology.chain(4)
      >>> averages, counts = decjax.gossip.relay_average(tree, jnp.arange(4.0))
      >>> averages.tolist(), counts.ravel().tolist()
      ([1.5, 1.5, 1.5, 1.5], [4.0, 4.0, 4.0, 4.0])
    """
    routes = relay_routes(topology)
    rounds = routes.diameter if rounds is None else check_int("rounds", rounds, minimum=1)
    state = jax.lax.fori_loop(
        0, rounds - 1, lambda _, s: relay_round(routes, values, s)[2], relay_init(routes, values)
    )
    totals, counts, _ = relay_round(routes, values, state)
    averages = jax.tree.map(lambda s, c: s / c.astype(s.dtype), totals, counts)
    return averages, counts


def relay_traffic(topology: Topology, routes: Routes, values: Any) -> dict[str, Any]:
    """The record of one relay round: on tree ``r``, one message per tree edge and
    direction (``2 (n - 1)``) carrying its share of the coordinates and a 4-byte count."""
    period = routes.valid.shape[1]
    shares = [
        sum(
            len(range(r, math.prod(x.shape[1:]), period)) * jnp.dtype(x.dtype).itemsize
            for x in jax.tree.leaves(values)
        )
        + COUNT_BYTES
        for r in range(period)
    ]
    n = topology.n
    links = Links(
        topology,
        jnp.arange(period, dtype=jnp.int32)[None],
        jnp.asarray([shares], jnp.float32),
    )
    sent = 2.0 * (n - 1) * sum(shares) / n  # a tree has n - 1 edges
    return {"bytes_sent": jnp.float32(sent), TRAFFIC: Traffic(links=links)}
