"""Communication accounting: how many messages and bytes each worker sends per gossip round."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_int, check_stacked
from decjax.gossip.traffic import Links
from decjax.topology import Topology
from decjax.topology.base import check_topology


def messages_per_worker(topology: Topology, step: Any = 0) -> jax.Array:
    """Mean number of *other* workers each worker sends its model to at ``step`` (jit-able).

    A message is counted for every non-zero off-diagonal weight ``W_t[i, j]``
    (``j`` sends to ``i``), averaged over workers: ``k`` on a ``k``-regular
    graph, 1 on the one-peer exponential graph, ``n - 1`` on the complete graph
    (the graph's peers; the bytes of an average done as an all-reduce, the
    complete graph's default, come from ``topology.copies_sent``: see
    :func:`bytes_per_round`).

    Examples:
      >>> import decjax
      >>> float(decjax.gossip.messages_per_worker(decjax.ring(8)))
      2.0
    """
    check_topology("topology", topology)
    return topology.messages_per_worker(step)


def worker_bytes(tree: Any) -> int:
    """Bytes of one worker's copy of a stacked ``(n, ...)`` tree (a static Python int)."""
    check_stacked("tree", tree)
    return sum(
        int(jnp.size(x) // jnp.shape(x)[0]) * jnp.dtype(jnp.result_type(x)).itemsize
        for x in jax.tree.leaves(tree)
    )


def bytes_per_round(topology: Topology, tree: Any, step: Any = 0, vectors: int = 1) -> jax.Array:
    """Mean bytes each worker sends in one gossip round of ``vectors`` trees like ``tree``:
    a copy per message, and ``2 (n - 1) / n`` copies for an average done as a ring
    all-reduce (``exchange="allreduce"``, the complete graph's default).

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> x = jnp.zeros((4, 10))  # 40 bytes per worker
      >>> float(decjax.gossip.bytes_per_round(decjax.ring(4), x))  # 2 neighbours
      80.0
      >>> float(decjax.gossip.bytes_per_round(decjax.complete(4), x))  # a ring all-reduce
      60.0
      >>> float(decjax.gossip.bytes_per_round(decjax.complete(4, exchange="all_to_all"), x))
      120.0
    """
    vectors = check_int("vectors", vectors, minimum=1)
    check_topology("topology", topology)
    return topology.copies_sent(step) * float(worker_bytes(tree) * vectors)


def link_bytes(
    topology: Topology, tree: Any, step: Any = 0, vectors: int = 1, rounds: int = 1
) -> Links:
    """The messages of ``rounds`` gossip rounds from ``step``: one copy of ``tree`` (times
    ``vectors``) on every link with ``W_t[i, j] != 0``, ``i != j``, one phase per round.

    A :class:`~decjax.gossip.traffic.Links` record (what
    :class:`decjax.timing.TimeModel` reads), ``O(1)`` to build: its edges (and the
    bytes an average sends as an all-reduce) come from the topology kind when
    asked. Its total, divided by ``n``, is :func:`bytes_per_round` (per round).

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> links = decjax.gossip.link_bytes(decjax.ring(4), jnp.zeros((4, 10)))  # 40 B each
      >>> links.dense()[0, 0].tolist()  # worker 0 receives from 3 and 1
      [0.0, 40.0, 0.0, 40.0]
    """
    vectors = check_int("vectors", vectors, minimum=1)
    rounds = check_int("rounds", rounds, minimum=1)
    return Links.of(topology, step, jnp.float32(worker_bytes(tree) * vectors), rounds)
