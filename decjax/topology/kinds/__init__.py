"""The topology kinds: one frozen pytree class per way of storing ``W_t``.

Each kind keeps the storage that makes its gossip cheap and carries its own
``matrix(step)``, difference-form ``delta`` along the worker axis (with the
named-axis forms), message counts and host-side analysis hooks:

:class:`Average`
    ``W_t = (1 - a_t) I + a_t 11^T/n`` (complete graph ``a = 1``, no
    communication ``a = 0``, periodic averaging). Gossip costs ``O(n d)``.
:class:`Shift`
    circulant ``W_t = sum_k w_{t,k} P^{o_{t,k}}`` with static offsets
    ``o_{t,k}`` (ring, exponential graphs). Gossip is a sum of rolls
    (``ppermute``-s under a worker axis), ``O(k n d)``.
:class:`Sparse`
    padded neighbour lists ``W_t[i, nbr[t, i, k]] = w[t, i, k]`` (any graph;
    random faults). Gossip is a gather (``all_gather`` under a worker axis),
    ``O(k n d)``.
:class:`Dense`
    the stack of matrices ``(T, n, n)`` (any matrix; also what sweeps over
    mixed topologies vmap). Gossip is one matmul at ``precision=HIGHEST``.
:class:`Random`
    a fresh random ``W_t`` drawn inside ``jit`` at every step from a key
    (epidemic learning, random s-out push-sum graphs, EquiDyn). Gossip is a
    scatter of ``s`` messages per worker, ``O(s n d)``; it has no fixed
    matrices, so it converts to no other kind.

A kind converts "downward" (``Average -> Shift -> Sparse -> Dense``) with
``topology.to(name)``; that is how a gossip backend is forced.
"""

from decjax.topology.base import KINDS
from decjax.topology.kinds.average import Average
from decjax.topology.kinds.dense import Dense
from decjax.topology.kinds.random import Random
from decjax.topology.kinds.shift import Shift
from decjax.topology.kinds.sparse import Sparse

# every kind's name, cheapest gossip first, and the backends each can be mixed with
REPRESENTATIONS = tuple(k.representation for k in sorted(KINDS.values(), key=lambda k: k.rank))
BACKENDS_FOR = {
    name: tuple(
        b
        for b in REPRESENTATIONS
        if b == name or (KINDS[b].rank >= KINDS[name].rank and KINDS[b].convertible)
    )
    for name in REPRESENTATIONS
}

__all__ = [
    "BACKENDS_FOR",
    "REPRESENTATIONS",
    "Average",
    "Dense",
    "Random",
    "Shift",
    "Sparse",
]
