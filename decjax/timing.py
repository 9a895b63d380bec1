r"""Simulated wall-clock time: a network and compute model evaluated inside ``jit``.

Every step of a decentralized run reports what it sent (the one channel of
:class:`~decjax.algorithms.StepTransformation` records): ``link_bytes``, a
:class:`decjax.gossip.Links` record of the messages :math:`j \to i` in each
communication phase the workers wait for (its edges come from the topology
kind, ``O(edges)``: no ``(n, n)`` matrix), and ``allreduce_bytes``, the size of
a vector averaged over all workers. A :class:`TimeModel` turns that record
into seconds:

- **compute**: worker :math:`i` spends :math:`c_i(t)` seconds on its gradient
  (:class:`Compute`: constant, per worker, a measured trace, or random draws);
- **a message** :math:`j \to i` of :math:`B_{ij}` bytes takes
  :math:`\ell_{ij} + \max(B_{ij} / b_{ij},\ O_j / p_j,\ I_i / p_i)`: the
  link's latency, then the slowest of the link's bandwidth and the sender's
  and receiver's ports (:class:`Network`), which every message of the phase
  shares (:math:`O_j` and :math:`I_i` are all the bytes :math:`j` sends and
  :math:`i` receives in the phase);
- **a phase** ends for worker :math:`i` when its own previous phase has ended
  and every message to it has arrived; a message leaves when its sender's
  previous phase ended (compute, for the first phase);
- **a synchronous step** ends when the last worker is done:

  .. math::

     t_{\text{step}} = \max_i r_i^{(P)}, \quad r^{(0)}_i = c_i, \quad
     r^{(p+1)}_i = \max\Bigl(r^{(p)}_i,\ \max_{j:\,B^{(p)}_{ij} > 0}
       r^{(p)}_j + \ell_{ij} + \tau^{(p)}_{ij}\Bigr),

  which on a homogeneous network is
  :math:`\max_i c_i + \sum_p \max_{ij} (\ell + \tau^{(p)}_{ij})`; an all-reduce is then
  a ring all-reduce, :math:`2 (n - 1)` phases of :math:`B / n` bytes on the
  ring :math:`0 \to 1 \to \dots \to n - 1 \to 0`;
- with ``overlap=True`` communication runs while the gradient is computed
  (an implementation that sends the previous step's model, as OSGP does): the
  step takes :math:`\max(\max_i c_i, \text{communication})`;
- messages nobody waits for (``inflight_bytes``: DASGD, OSGP with delays) add
  no time; the step (a *tick*) lasts as long as the slowest computation, and
  :func:`decjax.algorithms.network_delays` gives the tick delays the network
  implies; :func:`event_schedule` orders the arrivals of free-running workers.

What the model ignores: contention inside the switch fabric (only the ports
and links are limits), jitter other than the compute draws, protocol overhead
and packetisation. Bandwidths are in **bytes** per second; :func:`gbps`
converts from gigabits per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._random import varied
from decjax._validation import (
    as_key,
    available_memory,
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from decjax.topology import Topology

LINK_BYTES = "link_bytes"  # a decjax.gossip.Links: the messages j -> i the receivers wait for
ALLREDUCE_BYTES = "allreduce_bytes"  # bytes per worker of a vector averaged over all workers
INFLIGHT_BYTES = "inflight_bytes"  # (n, n) bytes of messages delivered in later ticks
OVERLAP_STEPS = "overlap_steps"  # the step's communication runs behind this many computations
TRAFFIC = (LINK_BYTES, ALLREDUCE_BYTES, INFLIGHT_BYTES, OVERLAP_STEPS)  # what the model reads
LAWS = ("lognormal", "exponential", "uniform")
BYTES_PER_GIGABIT = 1e9 / 8


def gbps(gigabits_per_second: float) -> float:
    """Bytes per second of a link of ``gigabits_per_second`` Gb/s.

    Examples:
      >>> import decjax
      >>> decjax.timing.gbps(1.0)
      125000000.0
    """
    check_positive("gigabits_per_second", gigabits_per_second)
    return float(gigabits_per_second) * BYTES_PER_GIGABIT


FLOAT32 = np.finfo(np.float32)


def _as_rates(name: str, value: Any, *, allow_inf: bool, allow_zero: bool) -> np.ndarray:
    """A scalar, ``(n,)`` or ``(n, n)`` array of non-negative (or positive) numbers that
    float32 represents: the clock runs in float32, where ``1e-300`` is 0 and ``1e300`` inf."""
    array = _real_array(name, value)
    if array.ndim > 2 or (array.ndim == 2 and array.shape[0] != array.shape[1]):
        raise ValueError(
            f"{name} must be a scalar, one value per worker (n,) or a matrix (n, n) "
            f"[receiver, sender], got shape {array.shape}"
        )
    bad = np.isnan(array) | (array < 0)
    if not allow_inf:
        bad |= np.isinf(array)
    if not allow_zero:
        bad |= array == 0
    if bad.any():
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} must be {rule}{'' if allow_inf else ' and finite'}, "
            f"got {np.atleast_1d(array)[np.atleast_1d(bad)][0]}"
        )
    _check_float32(name, array)
    return array


def _real_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of real numbers; text, booleans and complex refused."""
    raw = np.asarray(value)
    if raw.dtype == bool or not (
        np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}")
    return raw.astype(np.float64)


def _check_float32(name: str, array: np.ndarray) -> None:
    """Finite values stay finite and non-zero values non-zero in float32."""
    finite = array[np.isfinite(array) & (array != 0)]
    if finite.size and (finite.max() > FLOAT32.max or finite.min() < FLOAT32.tiny):
        worst = finite.max() if finite.max() > FLOAT32.max else finite.min()
        raise ValueError(
            f"{name}={worst:g} is outside float32's range ({FLOAT32.tiny:g} to {FLOAT32.max:g}), "
            "in which the clock runs: it would become 0 or inf; give it in other units"
        )


def _on_edges(array: np.ndarray, receivers: jax.Array, senders: jax.Array) -> jax.Array:
    """A scalar, per-sender ``(n,)`` or ``(n, n)`` [receiver, sender] value on each edge."""
    if array.ndim == 0:
        return jnp.float32(array)
    values = jnp.asarray(array, jnp.float32)
    if array.ndim == 1:  # a worker's uplink: the sender's value
        return values[senders]
    return values[receivers, senders]


@dataclass(frozen=True)
class Network:
    """Latency and bandwidth of every link, and optionally of every worker's port.

    Each of ``latency`` (seconds) and ``bandwidth`` (bytes/second) is a
    scalar (every link), an ``(n,)`` array (worker ``j``'s uplink: every
    message it sends) or an ``(n, n)`` matrix ``[receiver, sender]``.
    ``port_bandwidth`` (bytes/second, scalar or ``(n,)``) limits what a worker
    sends and what it receives in one phase, shared by all its messages: the
    star-shaped limit of workers behind one switch port each (``None``: no
    port limit, only the links).

    Examples:
      >>> import decjax
      >>> net = decjax.timing.Network(latency=1e-5, bandwidth=decjax.timing.gbps(10))
      >>> round(float(net.transfer_times(decjax.ring(4), 1e6)[0, 1]), 6)  # 1 MB at 10 Gb/s
      0.00081
    """

    latency: Any = 0.0
    bandwidth: Any = math.inf
    port_bandwidth: Any = None

    def __post_init__(self):
        object.__setattr__(
            self, "latency", _as_rates("latency", self.latency, allow_inf=False, allow_zero=True)
        )
        object.__setattr__(
            self,
            "bandwidth",
            _as_rates("bandwidth", self.bandwidth, allow_inf=True, allow_zero=False),
        )
        if self.port_bandwidth is not None:
            port = _as_rates(
                "port_bandwidth", self.port_bandwidth, allow_inf=True, allow_zero=False
            )
            if port.ndim == 2:
                raise ValueError("port_bandwidth must be a scalar or one value per worker (n,)")
            object.__setattr__(self, "port_bandwidth", port)

    def check(self, n: int) -> None:
        """Refuse arrays sized for another number of workers (before anything is compiled)."""
        for name in ("latency", "bandwidth", "port_bandwidth"):
            value = getattr(self, name)
            if value is not None and value.ndim and value.shape[0] != n:
                raise ValueError(
                    f"Network.{name} has {value.shape[0]} entries per axis but the run has "
                    f"n={n} workers"
                )

    def transfer(self, links: jax.Array) -> jax.Array:
        r"""``(n, n)`` seconds from departure to arrival of each message of one phase.

        ``links[i, j]`` is the bytes of the message :math:`j \to i` (0: none);
        the result is :math:`\ell_{ij} + \max(B_{ij}/b_{ij}, O_j/p_j, I_i/p_i)`
        where a message exists, 0 elsewhere (:meth:`edge_transfer` on every pair).
        """
        n = links.shape[-1]
        rows = jnp.arange(n, dtype=jnp.int32)
        receivers, senders = jnp.repeat(rows, n), jnp.tile(rows, n)
        seconds = self.edge_transfer(receivers, senders, jnp.reshape(links, (-1,)), n)
        return seconds.reshape(n, n)

    def edge_transfer(
        self, receivers: jax.Array, senders: jax.Array, nbytes: jax.Array, n: int
    ) -> jax.Array:
        """:meth:`transfer` of a phase given as an edge list (each link at most once), ``O(E)``:
        seconds from departure to arrival of each message, 0 where ``nbytes`` is 0."""
        self.check(n)
        nbytes = jnp.asarray(nbytes, jnp.float32)
        seconds = nbytes / _on_edges(self.bandwidth, receivers, senders)
        if self.port_bandwidth is not None:
            port = jnp.broadcast_to(jnp.asarray(self.port_bandwidth, jnp.float32), (n,))
            # each sender's bytes through its port, and each receiver's
            sent = jax.ops.segment_sum(nbytes, senders, num_segments=n) / port
            received = jax.ops.segment_sum(nbytes, receivers, num_segments=n) / port
            seconds = jnp.maximum(seconds, jnp.maximum(sent[senders], received[receivers]))
        latency = _on_edges(self.latency, receivers, senders)
        return jnp.where(nbytes > 0, latency + seconds, 0.0)

    def transfer_times(self, topology, message_bytes: float, step: Any = 0) -> jax.Array:
        """:meth:`transfer` of one ``message_bytes`` message on every link of ``topology``."""
        return self.transfer(message_pattern(topology, step) * jnp.float32(message_bytes))

    def allreduce_time(self, nbytes: jax.Array, n: int) -> jax.Array:
        r"""A ring all-reduce of ``nbytes`` per worker over ``0 -> 1 -> ... -> n-1 -> 0``.

        :math:`2 (n - 1)` phases (reduce-scatter, then all-gather), each sending
        :math:`B / n` bytes on every ring link; a phase lasts as long as its
        slowest link: :math:`2 (n - 1) \max_j (\ell_{j+1, j} + B / (n\, b_{j+1, j}))`.
        """
        if n == 1:
            return jnp.zeros((), jnp.float32)
        senders = jnp.arange(n, dtype=jnp.int32)
        chunk = jnp.full((n,), jnp.asarray(nbytes, jnp.float32) / n)
        phase = self.edge_transfer((senders + 1) % n, senders, chunk, n)
        return jnp.where(nbytes > 0, 2 * (n - 1) * jnp.max(phase), 0.0)


def message_pattern(topology, step: Any = 0) -> jax.Array:
    """``(n, n)`` float32: 1 where ``j`` sends to ``i != j`` at ``step`` (``W_t[i, j] != 0``)."""
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    matrix = topology.matrix(step)
    n = matrix.shape[-1]
    return ((matrix != 0) & ~jnp.eye(n, dtype=bool)).astype(jnp.float32)


def cluster(
    nodes: int,
    per_node: int = 8,
    *,
    intra_latency: float = 2e-6,
    intra_bandwidth: float = 300e9,
    inter_latency: float = 1e-5,
    inter_bandwidth: float = gbps(100),
) -> Network:
    """``nodes`` machines of ``per_node`` accelerators: fast links inside a node, slower between.

    Worker ``i`` sits on node ``i // per_node``. Messages between workers of one
    node use ``intra_*`` (an NVLink-class interconnect by default: 300 GB/s,
    2 µs), messages between nodes ``inter_*`` (a 100 Gb/s network, 10 µs),
    the link's own limits. Contention between the workers of a node for a
    shared network card is not modelled (give the :class:`Network` a
    ``port_bandwidth`` to bound what each worker sends and receives).

    Examples:
      >>> import decjax
      >>> net = decjax.timing.cluster(2, per_node=2, inter_bandwidth=decjax.timing.gbps(1))
      >>> bool(net.bandwidth[0, 1] > net.bandwidth[0, 2])
      True
    """
    for name, value in (("nodes", nodes), ("per_node", per_node)):
        check_int(name, value, minimum=1)
    node = np.arange(int(nodes) * int(per_node)) // int(per_node)
    same = node[:, None] == node[None, :]
    return Network(
        latency=np.where(same, intra_latency, inter_latency),
        bandwidth=np.where(same, intra_bandwidth, inter_bandwidth),
    )


@dataclass(frozen=True)
class Compute:
    """Seconds each worker spends computing its step.

    ``seconds`` is a scalar (every worker), an ``(n,)`` array (heterogeneous
    workers) or a ``(T, n)`` trace (step ``t`` uses row ``t mod T``: plug a
    measured trace here). With ``law``, each step multiplies it by an
    independent random factor of mean 1 per worker (``"lognormal"`` with
    log-standard deviation ``spread``, ``"exponential"``, or ``"uniform"`` on
    ``[1 - spread, 1 + spread]``), drawn from ``key`` folded with the step.

    Examples:
      >>> import decjax
      >>> decjax.timing.Compute([0.1, 0.3]).at(0, 2).tolist()
      [0.10000000149011612, 0.30000001192092896]
    """

    seconds: Any = 0.0
    law: str | None = None
    spread: float = 0.0
    key: Any = None

    def __post_init__(self):
        seconds = _real_array("Compute.seconds", self.seconds)
        if seconds.ndim > 2 or not np.isfinite(seconds).all() or (seconds < 0).any():
            raise ValueError(
                "Compute.seconds must be finite and >= 0: a scalar, one per worker (n,) or a "
                f"trace (T, n); got shape {seconds.shape}"
            )
        _check_float32("Compute.seconds", seconds)
        object.__setattr__(self, "seconds", seconds)
        spread = float(_real_array("Compute.spread", self.spread))
        if self.law is None or self.law == "exponential":
            if spread:
                raise ValueError(
                    f"Compute.spread applies to law='lognormal' or 'uniform'; law={self.law!r} "
                    "would ignore it"
                )
        if self.law is not None:
            check_choice("Compute.law", self.law, LAWS)
            if not 0 <= spread < (1 if self.law == "uniform" else math.inf):
                raise ValueError(
                    f"Compute.spread must be >= 0 (< 1 for uniform), got {self.spread}"
                )
            key = jax.random.key(0) if self.key is None else as_key("Compute.key", self.key)
            object.__setattr__(self, "key", key)

    def draws(self, updates: int, n: int) -> np.ndarray:
        """``(updates, n)`` float64 seconds of each worker's first ``updates`` computations,
        computed in one compiled loop (what :func:`event_schedule` uses)."""
        steps = jnp.arange(updates)
        draws = jax.jit(lambda k: jax.lax.map(lambda t: self.at(t, n), k))(steps)
        return np.asarray(draws, np.float64)

    def check(self, n: int) -> None:
        if self.seconds.ndim and self.seconds.shape[-1] != n:
            raise ValueError(
                f"Compute.seconds has {self.seconds.shape[-1]} workers but the run has n={n}"
            )

    def at(self, step: Any, n: int) -> jax.Array:
        """``(n,)`` seconds of each worker's computation at ``step`` (jit-able)."""
        seconds = jnp.asarray(self.seconds, jnp.float32)
        if seconds.ndim == 2:
            seconds = seconds[jnp.asarray(step) % seconds.shape[0]]
        seconds = jnp.broadcast_to(seconds, (n,))
        if self.law is None:
            return seconds
        key = jax.random.fold_in(varied(self.key), step)
        if self.law == "lognormal":
            sigma = jnp.float32(self.spread)
            factor = jnp.exp(sigma * jax.random.normal(key, (n,)) - sigma**2 / 2)
        elif self.law == "exponential":
            factor = jax.random.exponential(key, (n,))
        else:
            factor = jax.random.uniform(key, (n,), minval=1 - self.spread, maxval=1 + self.spread)
        return seconds * factor


@dataclass(frozen=True)
class TimeModel:
    """How long each step of a run takes, from what it sent (see the module docstring).

    Attributes:
      network: a :class:`Network` (default: instantaneous).
      compute: a :class:`Compute`, or seconds (scalar or ``(n,)``).
      overlap: communication runs while the gradient is computed.
      message_scale: every message's bytes are multiplied by this: train a small
        model while timing the messages of a larger one (e.g. a ResNet-18's
        46.8 MB instead of a 1-D CNN's), with ``compute`` set to the larger
        model's step time.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> model = decjax.timing.TimeModel(decjax.timing.Network(1e-3, 1e6), compute=0.01)
      >>> links = decjax.gossip.link_bytes(decjax.ring(4), jnp.zeros((4, 250)))  # 4 workers
      >>> info = {"link_bytes": links}  # one phase, 1 kB (250 float32) to each neighbour
      >>> round(float(model.step_time(info, 0, 4)), 6)  # 0.01 + 1e-3 + 1000 / 1e6
      0.012
    """

    network: Network = field(default_factory=Network)
    compute: Any = 0.0
    overlap: bool = False
    message_scale: float = 1.0

    def __post_init__(self):
        if not isinstance(self.network, Network):
            raise TypeError(
                f"network must be a decjax.timing.Network, got {type(self.network).__name__}"
            )
        if not isinstance(self.compute, Compute):
            object.__setattr__(self, "compute", Compute(self.compute))
        check_bool("overlap", self.overlap)
        scale = _real_array("message_scale", self.message_scale)
        if scale.ndim or not 0 < float(scale) < math.inf:
            raise ValueError(
                f"message_scale must be a finite number > 0, got {self.message_scale!r}"
            )
        _check_float32("message_scale", scale)
        object.__setattr__(self, "message_scale", float(scale))

    def check(self, n: int) -> None:
        """Refuse arrays sized for another number of workers, before anything is compiled."""
        self.network.check(n)
        self.compute.check(n)

    def step_time(self, info: dict, step: Any, n: int) -> jax.Array:
        """Seconds of one step, from its record ``info`` (only its :data:`TRAFFIC` keys)."""
        compute = self.compute.at(step, n)
        start = jnp.zeros((n,), jnp.float32) if self.overlap else compute
        ready = start
        scale = jnp.float32(self.message_scale)
        links = info.get(LINK_BYTES)  # a decjax.gossip.Links record
        if links is not None and links.phases == 1:
            ready = self._phase(ready, links.edges(0, scale), n)
        elif links is not None:  # one compiled phase, looped (consensus control has up to 20)
            ready = jax.lax.fori_loop(
                0, links.phases, lambda p, r: self._phase(r, links.edges(p, scale), n), ready
            )
        communicated = jnp.max(ready)
        if ALLREDUCE_BYTES in info:
            allreduce = self.network.allreduce_time(info[ALLREDUCE_BYTES] * scale, n)
            communicated = communicated + allreduce
        if OVERLAP_STEPS in info:  # sent now, needed that many computations later
            hidden = jnp.asarray(info[OVERLAP_STEPS], jnp.float32) * jnp.max(compute)
            return jnp.max(compute) + jnp.maximum(communicated - jnp.max(start) - hidden, 0.0)
        if self.overlap:
            return jnp.maximum(jnp.max(compute), communicated)
        return communicated

    def _phase(self, ready: jax.Array, edges, n: int) -> jax.Array:
        """When each worker has every message of one phase: ``O(E)`` for ``E`` edges."""
        receivers, senders, nbytes = edges
        seconds = self.network.edge_transfer(receivers, senders, nbytes, n)
        arrival = jnp.where(nbytes > 0, ready[senders] + seconds, 0.0)
        return jnp.maximum(ready, jax.ops.segment_max(arrival, receivers, num_segments=n))


@dataclass(frozen=True)
class Schedule:
    """The event-driven timeline of free-running workers (see :func:`event_schedule`).

    Attributes:
      finish: ``(K, n)`` time at which each worker finishes its ``k``-th update.
      arrival: ``(K, n, n)`` time at which the message of ``j``'s ``k``-th
        update reaches ``i`` (``inf``: no such message).
      applied: ``(K, n, n)`` updates ``i`` has finished when that message
        arrives (its staleness in ``i``'s updates is ``applied - k``).
      order: ``(M, 3)`` the ``M`` messages ``(k, receiver, sender)`` in order
        of arrival (ties by ``k``, then receiver, then sender).
    """

    finish: np.ndarray
    arrival: np.ndarray
    applied: np.ndarray
    order: np.ndarray


def event_schedule(model: TimeModel, pattern, message_bytes: float, updates: int) -> Schedule:
    r"""When every message of ``updates`` updates per worker arrives, with nobody waiting.

    Asynchronous workers (DASGD's setting) never wait: worker :math:`j`
    finishes its :math:`k`-th update at :math:`F_j(k) = \sum_{m \le k} c_j(m)`
    and sends it at once to every :math:`i` with ``pattern[i, j]``; it arrives
    at :math:`F_j(k) + \ell_{ij} + \tau_{ij}` (:meth:`Network.transfer` of one
    message per link). Vectorised over all messages (float64, on the host);
    the tests check it against a ``heapq`` event loop.

    Args:
      model: the :class:`TimeModel` (its compute draws and network).
      pattern: ``(n, n)`` who sends to whom (receiver first), e.g.
        :func:`message_pattern` of a topology.
      message_bytes: bytes of one message.
      updates: updates per worker ``K``.
    """
    if not isinstance(model, TimeModel):
        raise TypeError(f"model must be a decjax.timing.TimeModel, got {type(model).__name__}")
    check_nonnegative("message_bytes", message_bytes)
    _check_float32("message_bytes", np.asarray(float(message_bytes) * model.message_scale))
    updates = check_int("updates", updates, minimum=1)
    pattern = _real_array("pattern", pattern)
    if pattern.ndim != 2 or pattern.shape[0] != pattern.shape[1]:
        raise ValueError(f"pattern must be an (n, n) matrix, got shape {pattern.shape}")
    if not np.isfinite(pattern).all():
        raise ValueError("pattern must be finite: 1 (or any non-zero) where j sends to i")
    pattern = pattern != 0
    n = pattern.shape[0]
    np.fill_diagonal(pattern, False)
    model.check(n)
    need = updates * n * n * 24  # arrival, applied and the ordered messages, 8 bytes each
    if need > available_memory(device=False) // 2:
        raise ValueError(
            f"updates={updates} for {n} workers needs {need / 2**30:.1f} GiB of arrival times; "
            "ask for fewer updates (a schedule is (updates, n, n))"
        )
    compute = model.compute.draws(updates, n)
    finish = np.cumsum(compute, axis=0)
    links = jnp.asarray(pattern, jnp.float32) * jnp.float32(message_bytes * model.message_scale)
    transfer = np.asarray(model.network.transfer(links), np.float64)
    arrival = np.where(pattern[None], finish[:, None, :] + transfer[None], np.inf)
    applied = np.stack(
        [np.searchsorted(finish[:, i], arrival[:, i, :], side="right") for i in range(n)], axis=1
    )
    k, i, j = np.nonzero(np.broadcast_to(pattern, arrival.shape))
    ranked = np.lexsort((j, i, k, arrival[k, i, j]))
    return Schedule(finish, arrival, applied, np.stack([k, i, j], axis=1)[ranked])
