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
    padded neighbour lists ``W_t[i, nbr[t, i, k]] = w[t, i, k]`` (any graph).
    Gossip is a gather (``all_gather`` under a worker axis),
    ``O(k n d)``.
:class:`Dense`
    the stack of matrices ``(T, n, n)`` (any matrix; also what sweeps over
    mixed topologies vmap). Gossip is one matmul at ``precision=HIGHEST``.
:class:`Random`
    a fresh random ``W_t`` drawn inside ``jit`` at every step from a key
    (epidemic learning, random s-out push-sum graphs, EquiDyn). Gossip is a
    scatter of ``s`` messages per worker, ``O(s n d)``; it has no fixed
    matrices, so it converts to no other kind. One class per law:
    :class:`Epidemic`, :class:`SOut`, :class:`EquiDyn`, :class:`OUEquiDyn`.

:class:`Faulty`
    a wrapper: a sparse or dense ``base`` whose links and nodes fail at random,
    realized per step from a key (:func:`decjax.topology.with_faults`). Its
    storage and analysis are the base's; each step gossips over the surviving
    graph, stored as the base's kind.

A kind converts "downward" (``Average -> Shift -> Sparse -> Dense``) with
``topology.to(name)``; that is how a gossip backend is forced.
"""

from decjax.topology.base import backends_for, representations
from decjax.topology.kinds.average import Average
from decjax.topology.kinds.dense import Dense
from decjax.topology.kinds.faulty import FaultModel, Faulty
from decjax.topology.kinds.laws import Epidemic, EquiDyn, OUEquiDyn, SOut
from decjax.topology.kinds.random import Random
from decjax.topology.kinds.shift import Shift
from decjax.topology.kinds.sparse import Sparse

__all__ = [
    "Average",
    "Dense",
    "Epidemic",
    "EquiDyn",
    "FaultModel",
    "Faulty",
    "OUEquiDyn",
    "Random",
    "SOut",
    "Shift",
    "Sparse",
    "backends_for",
    "representations",
]
