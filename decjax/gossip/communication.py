"""Communication accounting: how many messages and bytes each worker sends per gossip round."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decjax.timing import message_pattern
from decjax.topology import Topology


def messages_per_worker(topology: Topology, step: Any = 0) -> jax.Array:
    """Mean number of *other* workers each worker sends its model to at ``step`` (jit-able).

    A message is counted for every non-zero off-diagonal weight ``W_t[i, j]``
    (``j`` sends to ``i``), averaged over workers: ``k`` on a ``k``-regular
    graph, 1 on the one-peer exponential graph, ``n - 1`` on the complete graph
    (an all-reduce would be cheaper; this counts peer-to-peer messages).

    Examples:
      >>> import decjax
      >>> float(decjax.gossip.messages_per_worker(decjax.ring(8)))
      2.0
    """
    return topology.messages_per_worker(step)


def worker_bytes(tree: Any) -> int:
    """Bytes of one worker's copy of a stacked ``(n, ...)`` tree (a static Python int)."""
    return sum(
        int(jnp.size(x) // jnp.shape(x)[0]) * jnp.dtype(jnp.result_type(x)).itemsize
        for x in jax.tree.leaves(tree)
    )


def bytes_per_round(topology: Topology, tree: Any, step: Any = 0, vectors: int = 1) -> jax.Array:
    """Mean bytes each worker sends in one gossip round of ``vectors`` trees like ``tree``."""
    return messages_per_worker(topology, step) * float(worker_bytes(tree) * vectors)


def link_bytes(topology: Topology, tree: Any, step: Any = 0, vectors: int = 1) -> jax.Array:
    """``(n, n)`` bytes of the message ``j -> i`` (receiver first) of one gossip round at ``step``.

    What :class:`decjax.timing.TimeModel` reads: one model copy of ``tree``
    (times ``vectors``) on every link with ``W_t[i, j] != 0``, ``i != j``.
    Its sum over the links, divided by ``n``, is :func:`bytes_per_round`.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> decjax.gossip.link_bytes(decjax.ring(4), jnp.zeros((4, 10)))[0].tolist()  # 40 B
      [0.0, 40.0, 0.0, 40.0]
    """
    return message_pattern(topology, step) * jnp.float32(worker_bytes(tree) * vectors)
