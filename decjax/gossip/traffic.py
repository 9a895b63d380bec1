r"""What a step sent over the links: a record in ``O(edges)``, read only when someone asks.

:class:`Links` is the ``link_bytes`` entry of an algorithm's per-step record
(:class:`~decjax.algorithms.StepTransformation`): the messages the receivers
wait for, in ``P`` sequential phases (one per gossip round). It stores what
determines them, not the messages themselves: the topology, and per phase
``m`` terms of a round index and the bytes each link of :math:`W_{\text{round}}`
carries (two terms: the params and the tracker of gradient tracking, sent in
the same round). Nothing of size ``n`` is built until a reader asks:

* :meth:`Links.edges` (what :class:`decjax.timing.TimeModel` reads): the
  phase's messages as an edge list from the topology kind's own storage
  (offsets, neighbour lists, targets), ``O(edges)``; a link used by several
  terms carries their summed bytes;
* :meth:`Links.dense`: the ``(P, n, n)`` bytes of each message ``j -> i``
  (receiver first, like :math:`W`), for tests and small analyses;
* :meth:`Links.total`: the bytes of all messages.

Without a time model nobody asks, so a run's compiled program holds no part of
it and a ring of a million workers traces in ``O(n)`` memory (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_int
from decjax.topology import Topology
from decjax.topology.base import Edges, check_topology


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Links:
    """The messages of ``P`` phases on one topology: terms ``(round, bytes per link)``.

    Attributes:
      topology: the graph whose links carry the messages.
      rounds: ``(P, m)`` int32: term ``m`` of phase ``p`` uses the links of
        :math:`W_{\\text{rounds}[p, m]}`.
      nbytes: ``(P, m)`` float32 bytes each of those links carries (0: the term
        sends nothing, e.g. a gossip round not taken).
    """

    topology: Topology
    rounds: jax.Array
    nbytes: jax.Array

    @classmethod
    def of(cls, topology: Topology, first_round: Any, nbytes: Any, phases: int = 1) -> Links:
        """``phases`` consecutive rounds from ``first_round``, ``nbytes`` on every link."""
        check_topology("topology", topology)
        phases = check_int("phases", phases, minimum=1)
        rounds = jnp.asarray(first_round, jnp.int32) + jnp.arange(phases, dtype=jnp.int32)
        nbytes = jnp.broadcast_to(jnp.asarray(nbytes, jnp.float32), (phases,))
        return cls(topology, rounds[:, None], nbytes[:, None])

    @classmethod
    def silent(cls, topology: Topology, phases: int = 1) -> Links:
        """``phases`` phases that send nothing (the record of a step without gossip)."""
        return cls.of(topology, 0, 0.0, phases)

    @property
    def phases(self) -> int:
        return self.rounds.shape[-2]

    def plus(self, other: Links, when: Any = True) -> Links:
        """Both records' messages in the same phases (``other``'s only ``when``)."""
        if other.phases != self.phases:
            raise ValueError(f"cannot add {other.phases} phases to {self.phases}")
        nbytes = jnp.where(when, other.nbytes, 0.0).astype(jnp.float32)
        return Links(
            self.topology,
            jnp.concatenate([self.rounds, other.rounds], axis=-1),
            jnp.concatenate([self.nbytes, nbytes], axis=-1),
        )

    def scaled(self, factor: Any) -> Links:
        """Every message ``factor`` times as large."""
        return Links(self.topology, self.rounds, (self.nbytes * factor).astype(jnp.float32))

    def edges(self, phase: int, scale: Any = 1.0) -> Edges:
        """Phase ``phase``'s messages ``(receivers, senders, bytes)`` (see ``link_loads``)."""
        return self.topology.link_loads(self.rounds[phase], self.nbytes[phase] * scale)

    def dense(self) -> jax.Array:
        """``(P, n, n)`` float32 bytes of each message ``j -> i`` in each phase."""
        n = self.topology.n

        def one(phase):
            r, s, b = self.edges(phase)
            return jnp.zeros((n, n), jnp.float32).at[r, s].add(b)

        return jnp.stack([one(p) for p in range(self.phases)])

    def total(self) -> jax.Array:
        """The bytes of every message of every phase."""
        return sum(jnp.sum(self.edges(p).bytes) for p in range(self.phases))
