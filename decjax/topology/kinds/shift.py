"""The circulant kind: ``W_t = sum_k w_{t,k} P^{o_{t,k}}``, gossip as a sum of rolls."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax.topology.base import (
    Edges,
    Topology,
    dense_from_lists,
    kind,
    numpy_from_lists,
    static,
)


@kind
class Shift(Topology):
    """Circulant graphs: rings, exponential graphs, any ``from_offsets``.

    ``offsets`` is a static tuple (one entry per step) of tuples of offsets
    ``o`` with ``W[i, (i + o) mod n] = w``; ``weights`` has shape ``(T, k)``.
    Static offsets make every roll a fixed ``ppermute`` under a worker axis.
    """

    weights: Any
    offsets: tuple[tuple[int, ...], ...] = static()

    representation: ClassVar[str] = "shift"
    rank: ClassVar[int] = 1
    step_ndim: ClassVar[int] = 2
    has_lists: ClassVar[bool] = True

    @classmethod
    def convert(cls, source: Topology) -> Shift:
        offsets, weights = source.circulant_form()
        return cls(weights=weights, offsets=offsets, **source.common_fields())

    def circulant_form(self) -> tuple[tuple[tuple[int, ...], ...], jax.Array]:
        return self.offsets, self.weights

    def _indices(self) -> np.ndarray:
        n = self.n
        return (np.arange(n)[None, :, None] + np.asarray(self.offsets)[:, None, :]) % n

    def lists(self) -> tuple[jax.Array, jax.Array]:
        idx = self._indices()
        w = jnp.broadcast_to(self.weights[:, None, :], idx.shape)
        return jnp.asarray(idx, jnp.int32), w

    def dense_weights(self) -> jax.Array:
        return dense_from_lists(self.n, *self.lists())

    def numpy_matrices(self) -> np.ndarray:
        idx = self._indices()
        w = np.asarray(jax.device_get(self.weights), dtype=np.float64)
        return numpy_from_lists(self.n, idx, np.broadcast_to(w[:, None, :], idx.shape))

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        weights = self.weights.astype(x.dtype)
        if all(offs == self.offsets[0] for offs in self.offsets):
            return rolled_delta(x, self.offsets[0], weights[step % self.period])
        branches = [
            lambda x, offs=offs, w=w: rolled_delta(x, offs, w)
            for offs, w in zip(self.offsets, weights, strict=True)
        ]
        return jax.lax.switch(step % self.period, branches, x)

    def _senders_once(self) -> np.ndarray:
        """``(T, k)`` bool: slot ``k`` names another worker, not named by an earlier slot
        of the same step (offsets equal mod ``n`` are one link)."""
        n = self.n
        return np.asarray(
            [
                [o % n != 0 and all((o - p) % n for p in offs[:k]) for k, o in enumerate(offs)]
                for offs in self.offsets
            ]
        )

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        t = jnp.asarray(step) % self.period
        once = jnp.asarray(self._senders_once())[t]
        return jnp.sum((self.weights[t] != 0) & once).astype(jnp.float32)

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """``O(n k m)`` edges from the offsets: terms sending on the same offset merge."""
        n = self.n
        t = jnp.asarray(steps) % self.period
        offsets = jnp.asarray(np.asarray(self.offsets) % n, jnp.int32)[t].reshape(-1)
        sending = (self.weights[t] != 0) & jnp.asarray(self._senders_once())[t]
        loads = jnp.where(sending, jnp.asarray(nbytes, jnp.float32)[:, None], 0.0).reshape(-1)
        # each offset's bytes on its first slot that sends (the others, and silent slots, 0)
        same = (offsets[:, None] == offsets[None, :]) & (loads[None, :] > 0)
        slot = jnp.arange(offsets.shape[0])
        repeated = jnp.any(same & (slot[None, :] < slot[:, None]), axis=1) | (loads == 0)
        loads = jnp.where(repeated, 0.0, jnp.sum(jnp.where(same, loads[None, :], 0.0), axis=1))
        rows = jnp.arange(n, dtype=jnp.int32)[:, None]
        senders = (rows + offsets[None, :]) % n
        return Edges(
            jnp.broadcast_to(rows, senders.shape).reshape(-1),
            senders.reshape(-1),
            jnp.broadcast_to(loads[None, :], senders.shape).reshape(-1),
        )

    def max_degree(self) -> int:
        return max(sum(1 for o in offs if o % self.n) for offs in self.offsets)

    def slackened(self, kappa: float) -> Shift:
        w = self.weights
        self_slot = jnp.full((*w.shape[:-1], 1), 1 - kappa, w.dtype)
        offsets = tuple((*offs, 0) for offs in self.offsets)
        return self.replace(weights=jnp.concatenate([kappa * w, self_slot], -1), offsets=offsets)

    def circulant_eigenvalues(self) -> np.ndarray:
        offsets = np.asarray(self.offsets) % self.n  # (T, k)
        return circulant_spectrum(self.n, offsets, np.asarray(jax.device_get(self.weights)))


def rolled_delta(x: jax.Array, offsets: tuple[int, ...], w: jax.Array) -> jax.Array:
    """``sum_k w[k] * (x[(i + offsets[k]) mod n] - x)`` (offset 0 contributes nothing).

    Rolls along the worker axis become ``ppermute``-s under a named worker axis.
    """
    terms = [w[k] * (_axis.roll_rows(x, o) - x) for k, o in enumerate(offsets) if o]
    return cast(jax.Array, sum(terms)) if terms else jnp.zeros_like(x)


def circulant_spectrum(n: int, offsets: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(T, n)`` eigenvalues of circulant matrices with ``(T, k)`` offsets and weights.

    In the difference form gossip uses, the self weight is implicit, so mode 0
    is exactly 1 and float32 weights summing to ``1 +- 3e-8`` cannot lift an
    eigenvalue above 1.
    """
    w = np.where(offsets == 0, 0.0, np.asarray(w, np.float64))
    modes = np.arange(n)
    phase = np.exp(2j * np.pi * offsets[:, :, None] * modes[None, None, :] / n)  # (T, k, n)
    return 1.0 + np.einsum("tk,tkj->tj", w, phase - 1.0)
