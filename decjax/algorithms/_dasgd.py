"""DASGD: decentralized asynchronous SGD with delayed updates, simulated in discrete ticks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax import _axis
from decjax._validation import as_key, check_choice, check_int, is_traced
from decjax.algorithms._common import (
    DecentralizedTransformation,
    Info,
    check_learning_rate,
    check_stochastic,
    constructor,
    learning_rate_at,
)
from decjax.algorithms.delays import NEVER, Delays, deliveries, incoming
from decjax.algorithms.faults import PROFILES, active_workers, check_speeds, where_workers
from decjax.gossip import TRAFFIC, Traffic, worker_bytes
from decjax.topology import Faulty, Topology


class DASGDState(NamedTuple):
    """State of :func:`dasgd` (all ring buffers indexed by ``tick mod size``)."""

    tick: jax.Array  # int32
    key: jax.Array
    sent: Any  # (n, B, ...) updates each worker sent at the last B ticks
    delays: jax.Array  # (n, B, n) delay of message j -> i sent at that tick (NEVER: none)
    arrivals: jax.Array  # (n, L, n) tick at which i applied k's update of that tick


def _staleness(arrivals, t, ages, delivered, n: int):
    """Total, count and maximum staleness of the messages ``delivered`` (``(i, age, j)``, own
    updates excluded): for a message ``j -> i`` sent at ``s = t - age``, the number of updates
    ``(k, s')`` applied by ``i`` before ``t`` and not by ``j`` before ``s``."""
    rows = arrivals.shape[0]
    in_receiver = (arrivals <= t - 1).reshape(rows, -1).astype(jnp.float32)
    everyone_arrivals = _axis.gather_rows(arrivals).reshape(n, -1)

    def stale_for_age(age):
        missing_at_sender = (everyone_arrivals >= t - age).astype(jnp.float32)
        return jnp.matmul(in_receiver, missing_at_sender.T, precision=jax.lax.Precision.HIGHEST)

    stale = jax.vmap(stale_for_age, out_axes=1)(ages)  # (receivers, age, senders)
    masked = jnp.where(delivered, stale, 0.0)
    total = _axis.sum_workers(jnp.sum(masked, axis=(1, 2)))
    count = _axis.sum_workers(jnp.sum(delivered, axis=(1, 2)).astype(jnp.float32))
    worst = _axis.max_workers(jnp.max(masked, axis=(1, 2))).astype(jnp.int32)
    return total, count, worst


def _memory_bytes() -> int:
    """Memory of the default device: its allocator limit, or the host's RAM on CPU."""
    stats = None
    try:
        stats = jax.local_devices()[0].memory_stats()
    except (RuntimeError, NotImplementedError):  # backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_fits(needed: int, n: int, max_delay: int, what: str) -> None:
    """Refuse, before anything is allocated, buffers larger than the device's memory."""
    available = _memory_bytes()
    if needed > available:
        raise ValueError(
            f"dasgd with n={n} workers and max_delay={max_delay} needs {needed / 2**30:.3g} GiB "
            f"for {what} (max_delay + 1 ticks of pending messages), more than the "
            f"{available / 2**30:.3g} GiB of this device; lower max_delay or n"
        )


@constructor
def dasgd(
    learning_rate: Any,
    topology: Topology | None = None,
    *,
    delays: Delays,
    n: int | None = None,
    speeds=None,
    key: jax.Array | None = None,
    profile: str = "random",
) -> DecentralizedTransformation:
    r"""Decentralized asynchronous SGD (Tosi & Theobald, 2023), in discrete ticks.

    Workers never wait and never average models. At tick :math:`t` every active
    worker computes a gradient at its *current* model, applies it at once,
    :math:`x_i \leftarrow x_i - \eta g_i(t)`, and sends the update to its
    neighbours (all workers by default, as in the paper); the update from
    :math:`j` reaches :math:`i` after a delay :math:`d_{ij}(t)` drawn from
    ``delays`` and is applied on arrival:

    .. math::  x_i(t+1) = x_i(t) - \eta\, g_i(t)
       - \eta \sum_{j \ne i} \sum_{s:\, s + d_{ij}(s) = t} g_j(s).

    Pending updates live in a ring buffer on device (``max_delay + 1`` ticks),
    inside ``scan``, with no Python per message. With zero delay this is exactly
    synchronous SGD on the *sum* of the workers' gradients (tested).

    Staleness (what the paper analyses): for each received update, the number of
    updates the receiving model (at the start of the arrival tick) had applied
    that the model the gradient was computed on had not. Each ``step`` reports
    the tick's ``staleness_sum``, ``staleness_count`` and ``staleness_max``
    (with ``bytes_sent``); ``simulate`` accumulates them and records the
    running average ``staleness_avg`` (:math:`S_{avg}`) and ``staleness_max``.
    Its cost is :math:`O(n^3 S_{max}^2)` per tick.

    Args:
      learning_rate: :math:`\eta > 0` or a schedule of the tick.
      topology: who sends to whom (its non-zero off-diagonal weights; the
        weights themselves are unused). Default: everyone (``n`` required).
      delays: a :class:`~decjax.algorithms.Delays` (``fixed_delay``,
        ``uniform_delay``, ``geometric_delay``, ``per_link_delay``).
      n: number of workers when ``topology`` is omitted.
      speeds: optional ``(n,)`` compute rates in ``(0, 1]``: a worker computes
        and sends an update only on the ticks it is active (stragglers).
      key: ``jax.random.key`` for delays and stragglers (default ``key(0)``).
      profile: stragglers' activity: ``"random"`` or ``"fixed"``.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.dasgd(0.1, delays=decjax.algorithms.fixed_delay(0), n=4)  # synchronous
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> new, state, info = tx.step(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in new[:, 0].tolist()]
      [-0.4, 0.6, 1.6, 2.6]
      >>> float(info["staleness_count"]), float(info["bytes_sent"])  # 12 messages of 4 bytes
      (12.0, 12.0)

    References:
      Tosi & Theobald. *Convergence Analysis of Decentralized ASGD*, 2023
      (arXiv:2309.03754).
    """
    check_learning_rate(learning_rate)
    _check_delays(delays)
    n, adjacency = _adjacency(topology, n)
    speeds = _speeds(speeds, n)
    check_choice("profile", profile, PROFILES)
    key = jax.random.key(0) if key is None else as_key("key", key)
    ticks = _Ticks(learning_rate, n, jnp.asarray(adjacency), delays, speeds, key, profile)
    _check_fits(ticks.index_bytes, n, delays.max_delay, "its delay and arrival indices")

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        updates, state, _ = ticks.advance(grads, state)
        return updates, state

    def step(grads, state, params, **extra_args):
        del extra_args
        updates, state, info = ticks.advance(grads, state)
        return optax.apply_updates(params, updates), state, info

    return DecentralizedTransformation(ticks.init, update, step)


def _check_delays(delays) -> None:
    if not isinstance(delays, Delays):
        raise TypeError(
            "delays must be a decjax.algorithms.Delays (fixed_delay, uniform_delay, "
            f"geometric_delay, per_link_delay), got {type(delays).__name__}"
        )


def _speeds(speeds, n: int):
    """None, or the validated ``(n,)`` compute rates."""
    if speeds is None:
        return None
    speeds = check_speeds(speeds)
    if speeds.shape[0] != n:
        raise ValueError(f"speeds has {speeds.shape[0]} entries but there are n={n} workers")
    return speeds


def _adjacency(topology: Topology | None, n: int | None) -> tuple[int, Any]:
    """``n`` and the ``(n, n)`` bool pattern of messages ``j -> i`` (receiver first)."""
    if topology is None:
        if n is None:
            raise ValueError("give n (the number of workers) when topology is omitted")
        n = check_int("n", n, minimum=1)
        return n, ~np.eye(n, dtype=bool)
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if isinstance(topology, Faulty):
        raise ValueError(
            "dasgd models unreliable links by their delays; pass a topology without faults"
        )
    check_stochastic(topology, "doubly")  # its neighbours' updates are summed, unweighted
    if n is not None and n != topology.n:
        raise ValueError(f"n={n} does not match topology.n={topology.n}")
    n = topology.n
    # traced (swept) topologies are allowed: their non-zero pattern is computed in jit
    mats = topology.matrices() if is_traced(topology.weights) else topology.numpy_matrices()
    return n, jnp.any(mats != 0, axis=0) & ~jnp.eye(n, dtype=bool)


@dataclass(frozen=True)
class _Ticks:
    """The tick of every worker: send, deliver what is due, measure staleness."""

    learning_rate: Any
    n: int
    adjacency: jax.Array  # (n, n) bool, receiver first
    delays: Delays
    speeds: Any  # None or (n,) compute rates
    key: jax.Array
    profile: str

    @property
    def buffer(self) -> int:
        return self.delays.max_delay + 1

    @property
    def window(self) -> int:
        return max(1, 2 * self.delays.max_delay)

    @property
    def index_bytes(self) -> int:
        return 4 * self.n * self.n * (self.buffer + self.window)  # delays and arrivals, int32

    def init(self, params) -> DASGDState:
        n, buffer = self.n, self.buffer
        leaves = jax.tree.leaves(params)
        if _axis.total_workers(leaves[0].shape[0]) != n:
            raise ValueError(f"params have {leaves[0].shape[0]} workers, dasgd was built for {n}")
        sent_bytes = buffer * sum(x.size * x.dtype.itemsize for x in leaves)
        max_delay = self.delays.max_delay
        _check_fits(self.index_bytes + sent_bytes, n, max_delay, "its ring buffers of updates")
        rows = leaves[0].shape[0]
        # Every buffer keeps the worker axis first (receivers for delays and
        # arrivals), so a sharded run splits all of them by worker.
        zeros = jax.tree.map(
            lambda x: jnp.zeros((x.shape[0], buffer, *x.shape[1:]), x.dtype), params
        )
        return DASGDState(
            tick=jnp.zeros((), jnp.int32),
            key=self.key,
            sent=zeros,
            delays=jnp.full((rows, buffer, n), NEVER, jnp.int32),
            arrivals=jnp.full((rows, self.window, n), NEVER, jnp.int32),
        )

    def _active(self, key, t) -> jax.Array:
        if self.speeds is None:
            return jnp.ones((self.n,), bool)
        return active_workers(self.speeds, key, t, self.profile)

    def advance(self, grads, state: DASGDState) -> tuple[Any, DASGDState, Info]:
        """The updates of one tick, the new state and the tick's record."""
        n, buffer, t = self.n, self.buffer, state.tick
        key, k_delay, k_active = jax.random.split(state.key, 3)
        active_all = self._active(k_active, t)
        active = _axis.local_rows(active_all)
        eta = learning_rate_at(self.learning_rate, t)
        own = optax.tree.scale(-eta, where_workers(active, grads, optax.tree.zeros_like(grads)))
        slot = t % buffer
        link_all = self.adjacency & active_all[None, :]  # message j -> i exists
        link = _axis.local_rows(link_all)
        d = jnp.where(link, _axis.local_rows(self.delays.sample(k_delay, n)), NEVER)
        sent = jax.tree.map(
            lambda buf, u: buf.at[:, slot].set(u.astype(buf.dtype)), state.sent, own
        )
        delay_buf = state.delays.at[:, slot].set(d)

        # Arrival times for staleness: own update applied at its tick, others at s + d.
        eye = _axis.local_rows(jnp.eye(n, dtype=bool))
        arrive = jnp.where(eye & active[:, None], t, jnp.where(link, t + d, NEVER))
        arrivals = state.arrivals.at[:, t % self.window].set(arrive)

        ages, slots, deliver = deliveries(delay_buf, t, buffer)
        received = jax.tree.map(lambda buf: incoming(buf, slots, deliver, n), sent)
        # in the params' dtype (a bfloat16 model stays bfloat16)
        updates = jax.tree.map(lambda a, b, buf: (a + b).astype(buf.dtype), own, received, sent)
        total, count, worst = _staleness(state.arrivals, t, ages, deliver & ~eye[:, None, :], n)
        inflight = link_all.astype(jnp.float32) * jnp.float32(worker_bytes(grads))
        info = {
            "bytes_sent": jnp.sum(inflight) / n,
            TRAFFIC: Traffic(inflight=inflight),  # nobody waits for them: no time added
            "staleness_sum": total,
            "staleness_count": count,
            "staleness_max": worst,
        }
        return updates, DASGDState(t + 1, key, sent, delay_buf, arrivals), info
