"""The clock: each worker's compute time, and a step's seconds from its :class:`Traffic`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._random import varied
from decjax._validation import as_key, check_bool, check_choice
from decjax.gossip import Traffic
from decjax.timing._network import Network, _check_float32, _real_array


@dataclass(frozen=True)
class _Law:
    """A compute-time law: ``factor(key, n, spread)`` draws ``(n,)`` factors of mean 1;
    ``spread_limit``: the spread must be below it (``None``: the law takes no spread)."""

    factor: Callable[[jax.Array, int, float], jax.Array]
    spread_limit: float | None


def _lognormal(key: jax.Array, n: int, spread: float) -> jax.Array:
    sigma = jnp.float32(spread)
    return jnp.exp(sigma * jax.random.normal(key, (n,)) - sigma**2 / 2)


_LAWS = {
    "lognormal": _Law(_lognormal, math.inf),
    "exponential": _Law(lambda key, n, spread: jax.random.exponential(key, (n,)), None),
    "uniform": _Law(
        lambda key, n, spread: jax.random.uniform(key, (n,), minval=1 - spread, maxval=1 + spread),
        1.0,
    ),
}
LAWS = tuple(_LAWS)


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
        law = None if self.law is None else _LAWS[check_choice("Compute.law", self.law, LAWS)]
        if spread and (law is None or law.spread_limit is None):
            raise ValueError(
                f"Compute.spread applies to law='lognormal' or 'uniform'; law={self.law!r} "
                "would ignore it"
            )
        if law is not None:
            if not 0 <= spread < (law.spread_limit or math.inf):
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
        return seconds * _LAWS[self.law].factor(key, n, self.spread)


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
      >>> traffic = decjax.gossip.Traffic(links)  # one phase, 1 kB (250 float32) to each neighbour
      >>> round(float(model.step_time(traffic, 0, 4)), 6)  # 0.01 + 1e-3 + 1000 / 1e6
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

    def step_time(self, traffic: Traffic | None, step: Any, n: int) -> jax.Array:
        """Seconds of one step, from what it sent (a :class:`~decjax.gossip.Traffic`; ``None``:
        nothing, the step is its computation)."""
        compute = self.compute.at(step, n)
        start = jnp.zeros((n,), jnp.float32) if self.overlap else compute
        traffic = Traffic() if traffic is None else traffic
        if not isinstance(traffic, Traffic):
            raise TypeError(
                f"step_time reads a decjax.gossip.Traffic, got {type(traffic).__name__}"
            )
        ready = start
        scale = jnp.float32(self.message_scale)
        links = traffic.links
        if links is not None and links.phases == 1:
            ready = self._phase(ready, links, 0, scale, n)
        elif links is not None:  # one compiled phase, looped (consensus control has up to 20)
            ready = jax.lax.fori_loop(
                0, links.phases, lambda p, r: self._phase(r, links, p, scale, n), ready
            )
        communicated = jnp.max(ready)
        if traffic.allreduce is not None:
            allreduce = self.network.allreduce_time(traffic.allreduce * scale, n)
            communicated = communicated + allreduce
        if traffic.overlap_steps is not None:  # sent now, needed that many computations later
            hidden = jnp.asarray(traffic.overlap_steps, jnp.float32) * jnp.max(compute)
            return jnp.max(compute) + jnp.maximum(communicated - jnp.max(start) - hidden, 0.0)
        if self.overlap:
            return jnp.maximum(jnp.max(compute), communicated)
        return communicated

    def _phase(self, ready: jax.Array, links, phase: Any, scale: jax.Array, n: int) -> jax.Array:
        """When each worker has every message of one phase: ``O(E)`` for ``E`` edges; an
        all-reduce in the phase starts when the last worker is ready and ends for all."""
        receivers, senders, nbytes = links.edges(phase, scale)
        seconds = self.network.edge_transfer(receivers, senders, nbytes, n)
        arrival = jnp.where(nbytes > 0, ready[senders] + seconds, 0.0)
        ready = jnp.maximum(ready, jax.ops.segment_max(arrival, receivers, num_segments=n))
        collective = links.allreduce(phase, scale)
        everyone = jnp.max(ready) + self.network.allreduce_time(collective, n)
        return jnp.where(collective > 0, jnp.broadcast_to(everyone, ready.shape), ready)
