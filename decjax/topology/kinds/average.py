"""The averaging kind: ``W_t = (1 - a_t) I + a_t 11^T / n``, gossip in ``O(n d)``."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._validation import check_choice
from decjax.topology.base import Edges, Topology, kind, static

EXCHANGES = ("allreduce", "all_to_all")


@kind
class Average(Topology):
    """Complete graph (``a = 1``), no communication (``a = 0``), periodic averaging.

    ``weights`` has shape ``(T,)``: the averaging strength ``a_t`` of each step.
    ``exchange`` is how an averaging step communicates, for the byte counts and
    the clock: ``"allreduce"`` (the default: a ring all-reduce, ``2 (n - 1)``
    phases of ``B / n`` bytes, ``2 (n - 1) / n`` model copies sent per worker:
    what synchronous data-parallel training does) or ``"all_to_all"`` (every
    worker sends its model to the ``n - 1`` others, ``n - 1`` copies: a
    peer-to-peer implementation). Gossip computes the same average either way.
    """

    weights: Any
    exchange: str = static(default="allreduce")
    representation: ClassVar[str] = "average"
    rank: ClassVar[int] = 0
    step_ndim: ClassVar[int] = 1

    def circulant_form(self) -> tuple[tuple[tuple[int, ...], ...], jax.Array]:
        """Offsets ``0..n-1`` at every step and the ``(T, n)`` circulant weights."""
        n = self.n
        a = self.weights[:, None]
        offsets = tuple(tuple(range(n)) for _ in range(self.period))
        base = jnp.zeros((n,), a.dtype).at[0].set(1.0)
        return offsets, (1.0 - a) * base[None, :] + a / n

    def dense_weights(self) -> jax.Array:
        a = self.weights[:, None, None]
        return (1.0 - a) * jnp.eye(self.n)[None] + a / self.n

    def numpy_matrices(self) -> np.ndarray:
        w = np.asarray(jax.device_get(self.weights), dtype=np.float64)[:, None, None]
        return (1.0 - w) * np.eye(self.n) + w / self.n

    def lists(self) -> tuple[jax.Array, jax.Array]:
        return self.to("shift").lists()

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        if self._never_averages():  # solo: W = I, no average to compute and scale by 0
            return jnp.zeros_like(x)
        a = self.weights[step % self.period].astype(x.dtype)
        return a * (_axis.mean_workers(x)[None] - x)

    def _never_averages(self) -> bool:
        """Whether the weights are known (not traced) and all zero: ``W = I`` at every step."""
        return not isinstance(self.weights, jax.core.Tracer) and not np.any(
            np.asarray(self.weights)
        )

    def __post_init__(self):
        check_choice("exchange", self.exchange, EXCHANGES)

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        t = jnp.asarray(step) % self.period
        return jnp.where(self.weights[t] != 0, self.n - 1, 0).astype(jnp.float32)

    def copies_sent(self, step: Any = 0) -> jax.Array:
        if self.exchange == "all_to_all":
            return self.messages_per_worker(step)
        t = jnp.asarray(step) % self.period
        return jnp.where(self.weights[t] != 0, 2.0 * (self.n - 1) / self.n, 0.0).astype(jnp.float32)

    def exchange_of_average(self) -> str | None:
        if self.n == 1 or self._never_averages():
            return None  # never averages (solo)
        return self.exchange

    def allreduce_loads(self, steps: jax.Array, nbytes: jax.Array) -> jax.Array:
        if self.exchange != "allreduce":
            return jnp.zeros((), jnp.float32)
        return self._averaged_bytes(steps, nbytes)

    def _averaged_bytes(self, steps: jax.Array, nbytes: jax.Array) -> jax.Array:
        averaging = self.weights[jnp.asarray(steps) % self.period] != 0
        return jnp.sum(jnp.where(averaging, jnp.asarray(nbytes, jnp.float32), 0.0))

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """Every worker to every other, ``E = n (n - 1)``, when any term averages and the
        exchange is ``"all_to_all"``; one empty edge under an all-reduce (see
        :meth:`allreduce_loads`)."""
        n = self.n
        if self.exchange == "allreduce":
            nothing = jnp.zeros((1,), jnp.int32)
            return Edges(nothing, nothing, jnp.zeros((1,), jnp.float32))
        load = self._averaged_bytes(steps, nbytes)
        rows = jnp.arange(n, dtype=jnp.int32)[:, None]
        senders = (rows + 1 + jnp.arange(n - 1, dtype=jnp.int32)[None, :]) % n
        return Edges(
            jnp.broadcast_to(rows, senders.shape).reshape(-1),
            senders.reshape(-1),
            jnp.full((senders.size,), load, jnp.float32),
        )

    def stack_lists(self):
        """No neighbour lists (each worker listing only itself) and its averaging."""
        own = jnp.broadcast_to(
            jnp.arange(self.n, dtype=jnp.int32)[None, :, None], (self.period, self.n, 1)
        )
        return own, jnp.zeros(own.shape, self.weights.dtype), self.weights

    def max_degree(self) -> int:
        return 0 if not np.any(np.asarray(self.weights)) else self.n - 1

    def slackened(self, kappa: float) -> Average:
        return self.replace(weights=kappa * self.weights)

    def circulant_eigenvalues(self) -> np.ndarray:
        a = np.asarray(jax.device_get(self.weights), np.float64)
        lam = np.broadcast_to((1.0 - a)[:, None], (self.period, self.n)).astype(complex)
        lam[:, 0] = 1.0
        return lam
