"""The network: latency and bandwidth of links and ports, and the time a phase's messages take."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._validation import check_int, check_positive
from decjax.topology import Topology

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
