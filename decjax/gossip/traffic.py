r"""What a step sent: a typed record in ``O(edges)``, read only when someone asks.

Every algorithm's per-step record (:class:`~decjax.algorithms.StepTransformation`)
holds its traffic under one key, ``"traffic"`` (:data:`TRAFFIC`): a
:class:`Traffic` of the messages the workers wait for (:class:`Links`), the
bytes averaged over all workers (an all-reduce), the messages in flight that
nobody waits for, and how many computations the communication hides behind.
Algorithms write it; the clock (:class:`decjax.timing.TimeModel`) only reads
it, and nothing here knows about time.

:class:`Links` is the record of the messages the receivers
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

import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp

from decjax._validation import check_int
from decjax.topology import Topology
from decjax.topology.base import Edges, check_topology

TRAFFIC = "traffic"  # the key of a step record's Traffic (what the clock reads; not a metric)


def _allreduce_messages(nbytes: jax.Array, n: int) -> jax.Array:
    """The ``2 n (n - 1)`` messages of a ring all-reduce of ``nbytes`` per worker (0 for none)."""
    return jnp.where(nbytes > 0, 2.0 * n * (n - 1), 0.0) if n > 1 else jnp.zeros((), jnp.float32)


def _allreduce_total(nbytes: jax.Array, n: int) -> jax.Array:
    """The bytes a ring all-reduce of ``nbytes`` per worker sends in all: ``2 (n - 1) B``."""
    return 2.0 * (n - 1) * nbytes


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
        """Phase ``phase``'s peer-to-peer messages ``(receivers, senders, bytes)`` (see
        ``link_loads``)."""
        return self.topology.link_loads(self.rounds[phase], self.nbytes[phase] * scale)

    def allreduce(self, phase: int, scale: Any = 1.0) -> jax.Array:
        """Bytes per worker phase ``phase`` averages by an all-reduce (the complete graph's
        and periodic averaging's default exchange; see ``allreduce_loads``)."""
        return self.topology.allreduce_loads(self.rounds[phase], self.nbytes[phase] * scale)

    def dense(self) -> jax.Array:
        """``(P, n, n)`` float32 bytes of each message ``j -> i`` in each phase; an all-reduce
        of ``B`` bytes puts ``2 (n - 1) B / n`` on each link ``j -> j + 1`` of its ring."""
        n = self.topology.n
        ring = jnp.arange(n)

        def one(phase):
            r, s, b = self.edges(phase)
            links = jnp.zeros((n, n), jnp.float32).at[r, s].add(b)
            if n == 1:
                return links
            chunks = 2.0 * (n - 1) / n * self.allreduce(phase)
            return links.at[(ring + 1) % n, ring].add(chunks)

        return jnp.stack([one(p) for p in range(self.phases)])

    def total(self) -> jax.Array:
        """The bytes of every message of every phase (``2 (n - 1) B`` for an all-reduce of
        ``B`` bytes per worker)."""
        n = self.topology.n
        return cast(
            jax.Array,
            sum(
                jnp.sum(self.edges(p).bytes) + _allreduce_total(self.allreduce(p), n)
                for p in range(self.phases)
            ),
        )


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Traffic:
    """What one step sent, by how the workers wait for it (``None``: nothing of that kind).

    Attributes:
      links: the messages the receivers wait for, in phases (:class:`Links`); a
        phase on a topology that averages everyone by an all-reduce
        (``complete(n)``'s default) holds that all-reduce (:meth:`Links.allreduce`).
      allreduce: float32 bytes per worker of a vector averaged over all workers
        (local SGD, Gossip-PGA, DiLoCo): the clock times a ring all-reduce,
        ``2 (n - 1)`` phases of ``B / n`` bytes.
      inflight: ``(n, n)`` float32 bytes of messages ``j -> i`` delivered in later
        ticks, which nobody waits for (DASGD, OSGP with delays).
      overlap_steps: the step's communication runs behind this many
        computations (Streaming DiLoCo's ``overlap``).

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> links = decjax.gossip.link_bytes(decjax.ring(4), jnp.zeros((4, 250)))  # 1 kB each
      >>> traffic = decjax.gossip.Traffic(links=links)
      >>> float(traffic.total_bytes(4)), float(traffic.messages(4))  # 8 messages of 1 kB
      (8000.0, 8.0)
    """

    links: Links | None = None
    allreduce: jax.Array | None = None
    inflight: jax.Array | None = None
    overlap_steps: jax.Array | None = None

    def plus(self, other: Traffic, when: Any = True) -> Traffic:
        """Both records' messages, ``other``'s counted only ``when`` (messages sent in the
        same phases: gradient tracking's params and tracker)."""
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if (mine is None) != (theirs is None):
                raise ValueError(f"cannot add a Traffic with {field.name} to one without")
            if mine is None:
                fields[field.name] = None
            elif isinstance(mine, Links):
                fields[field.name] = mine.plus(theirs, when)
            elif field.name == "overlap_steps":
                fields[field.name] = mine
            else:
                fields[field.name] = mine + jnp.where(when, theirs, 0.0).astype(jnp.float32)
        return Traffic(**fields)

    def replace(self, **changes: Any) -> Traffic:
        """This record with some fields changed (``lax.cond`` branches need the same fields)."""
        return dataclasses.replace(self, **changes)

    def messages(self, n: int) -> jax.Array:
        """How many messages the step sent: one per link and phase that carries bytes, the
        ``2 n (n - 1)`` of a ring all-reduce, and every message in flight."""
        count = jnp.zeros((), jnp.float32)
        if self.links is not None:
            for p in range(self.links.phases):
                count += jnp.sum(self.links.edges(p).bytes > 0).astype(jnp.float32)
                count += _allreduce_messages(self.links.allreduce(p), n)
        if self.allreduce is not None:
            count += _allreduce_messages(self.allreduce, n)
        if self.inflight is not None:
            count += jnp.sum(self.inflight > 0).astype(jnp.float32)
        return count

    def total_bytes(self, n: int) -> jax.Array:
        """The bytes of every message the step sent (a ring all-reduce of ``B`` bytes per
        worker sends ``2 (n - 1) B`` in all)."""
        total = jnp.zeros((), jnp.float32)
        if self.links is not None:
            total += self.links.total()
        if self.allreduce is not None:
            total += _allreduce_total(self.allreduce, n)
        if self.inflight is not None:
            total += jnp.sum(self.inflight)
        return total
