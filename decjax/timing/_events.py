"""Free-running workers: when their messages arrive, and the tick delays a network implies."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from decjax._validation import available_memory, check_int, check_nonnegative
from decjax.algorithms.delays import Delays, per_link_delay
from decjax.timing._model import TimeModel
from decjax.timing._network import _check_float32, _real_array, message_pattern


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


def network_delays(model, message_bytes: float, topology, *, tick: float | None = None) -> Delays:
    r"""The tick delays a network implies, for :func:`decjax.dasgd` and :func:`decjax.osgp`.

    A message sent at the end of tick :math:`s` and applied at the end of tick
    :math:`s + d` must arrive within :math:`d` ticks, so
    :math:`d_{ij} = \lceil (\ell_{ij} + \tau_{ij}) / \text{tick} \rceil`, with
    :math:`\ell_{ij} + \tau_{ij}` the latency and transfer time of one
    ``message_bytes`` message on the link (:meth:`decjax.timing.Network.transfer`,
    the ports shared by the messages of one tick). With these delays the
    staleness DASGD reports is the one the network causes, and the run's
    simulated ``time`` (ticks of the slowest computation) is consistent with them.

    Args:
      model: a :class:`decjax.timing.TimeModel`.
      message_bytes: bytes of one message (e.g. ``decjax.gossip.worker_bytes(params)``).
      topology: who sends to whom.
      tick: seconds per tick (default: the slowest worker's mean compute time).

    Examples:
      >>> import decjax
      >>> net = decjax.timing.Network(latency=0.01, bandwidth=1e6)  # 10 ms, 1 MB/s
      >>> model = decjax.timing.TimeModel(net, compute=0.02)  # 20 ms per tick
      >>> decjax.timing.network_delays(model, 25_000, decjax.ring(4)).max_delay  # 35 ms
      2
    """
    if not isinstance(model, TimeModel):
        raise TypeError(f"model must be a decjax.timing.TimeModel, got {type(model).__name__}")
    if tick is None:
        tick = float(np.max(np.mean(np.atleast_2d(model.compute.seconds), axis=0)))
    if not tick > 0:
        raise ValueError("tick must be > 0 (give tick=, or a TimeModel with compute time > 0)")
    seconds = np.asarray(model.network.transfer_times(topology, message_bytes), np.float64)
    delays = np.ceil(seconds / tick - 1e-6).astype(np.int64)  # 1e-6: float32 transfer times
    return per_link_delay(np.where(np.asarray(message_pattern(topology)) > 0, delays, 0))
