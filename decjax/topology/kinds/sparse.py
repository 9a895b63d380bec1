"""The neighbour-list kind: ``W_t[i, nbr[t, i, k]] = w[t, i, k]``, gossip as a gather."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._platform import separated
from decjax.topology.base import (
    Edges,
    Topology,
    dense_from_lists,
    kind,
    numpy_from_lists,
    row_edges,
    static,
)
from decjax.topology.kinds.average import Average
from decjax.topology.kinds.shift import circulant_spectrum

# From this many slots on, a leaf is materialized before its gathers
# (decjax._platform.separated): with 10 slots, parallel gradient tracking took 894 ms per
# step instead of 64 when XLA fused each gossip into the next (benchmarks/push_sum.py);
# below 4 slots the copy costs more.
SEPARATE_FROM = 4


@kind
class Sparse(Topology):
    """Any graph as padded neighbour lists (what ``with_faults`` wraps).

    ``neighbors`` holds int32 indices ``(T, n, k)``, ``weights`` the matching
    ``(T, n, k)`` weights; padding slots point to the worker itself with weight 0.
    ``averaging`` (``None``, or ``(T,)`` strengths ``a_t``) adds exact averaging,
    ``W_t = L_t + a_t (11^T/n - I)``: what a sweep stacking rings with the complete
    graph (or ``solo``) holds, so the complete graph costs an ``O(n d)`` mean, not an
    ``(n, n)`` matrix (:func:`decjax.topology.stack`). A member is either: its lists
    are empty where ``a_t != 0``. ``exchange`` is how those averages communicate
    (``"allreduce"`` or ``"all_to_all"``, as on :class:`Average`).
    """

    weights: Any
    neighbors: Any
    averaging: Any = None
    exchange: str = static(default="allreduce")  # how the averaging members communicate

    representation: ClassVar[str] = "sparse"
    rank: ClassVar[int] = 2
    step_ndim: ClassVar[int] = 3
    has_lists: ClassVar[bool] = True

    @classmethod
    def convert(cls, source: Topology) -> Sparse:
        neighbors, weights = source.lists()
        return cls(weights=weights, neighbors=neighbors, **source.common_fields())

    def lists(self) -> tuple[jax.Array, jax.Array]:
        if self.averaging is not None:
            raise ValueError(
                f"{self.name} averages over all workers at some steps: it has no neighbour "
                "lists (use matrix(step) or to('dense'))"
            )
        return self.neighbors, self.weights

    def stack_lists(self):
        nbr, w = self.neighbors, self.weights
        a = jnp.zeros((self.period,), w.dtype) if self.averaging is None else self.averaging
        return nbr, w, a

    def _averaging_at(self, step: Any) -> jax.Array:
        return self.averaging[jnp.asarray(step) % self.period]

    def realized_lists(self, step: Any) -> tuple[jax.Array, jax.Array]:
        """Neighbours ``(n, k)`` and weights ``(n, k)`` used at ``step``."""
        t = jnp.asarray(step) % self.period
        return self.neighbors[t], self.weights[t]

    def dense_weights(self) -> jax.Array:
        dense = dense_from_lists(self.n, self.neighbors, self.weights, self.push)
        if self.averaging is None:
            return dense
        a = self.averaging.astype(dense.dtype)[:, None, None]
        return dense + a * (1.0 / self.n - jnp.eye(self.n, dtype=dense.dtype))[None]

    def numpy_matrices(self) -> np.ndarray:
        nbr = np.asarray(jax.device_get(self.neighbors))
        w = np.asarray(jax.device_get(self.weights), dtype=np.float64)
        dense = numpy_from_lists(self.n, nbr, w)
        if self.averaging is None:
            return dense
        a = np.asarray(jax.device_get(self.averaging), np.float64)[:, None, None]
        return dense + a * (1.0 / self.n - np.eye(self.n))[None]

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        nbr, w = self.realized_lists(step)
        if nbr.shape[1] >= SEPARATE_FROM:
            x = separated(x, step)
        nbr, w = _axis.local_rows(nbr), _axis.local_rows(w).astype(x.dtype)
        everyone = _axis.gather_rows(x)  # identity on one device; all_gather when sharded
        expand = (slice(None),) + (None,) * (x.ndim - 1)
        if self.push:
            delta = self._push_delta(x, everyone, step)
        else:
            delta = sum(  # type: ignore[assignment]
                w[:, k][expand] * (jnp.take(everyone, nbr[:, k], axis=0) - x)
                for k in range(nbr.shape[1])
            )
        if self.averaging is None:
            return delta
        a = self._averaging_at(step).astype(x.dtype)
        return delta + a * (_axis.mean_workers(x)[None] - x)

    def _push_delta(self, x: jax.Array, everyone: jax.Array, step: jax.Array) -> jax.Array:
        """``sum_{j != i} W_ij x_j - c_i x_i`` with ``c_i`` what ``i`` sends away (its column's
        off-diagonal sum): the worker sum is preserved (a column-stochastic ``W``)."""
        nbr_all, w_all = self.realized_lists(step)
        off_all = jnp.where(nbr_all == jnp.arange(self.n)[:, None], 0.0, w_all).astype(x.dtype)
        sent = jnp.zeros((self.n,), x.dtype).at[nbr_all].add(off_all)  # in x's precision
        nbr, off, sent = (
            _axis.local_rows(nbr_all),
            _axis.local_rows(off_all),
            _axis.local_rows(sent),
        )
        expand = (slice(None),) + (None,) * (x.ndim - 1)
        pulled = sum(
            off[:, k][expand] * jnp.take(everyone, nbr[:, k], axis=0) for k in range(nbr.shape[1])
        )
        return pulled - sent[expand] * x

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        nbr, w = self.realized_lists(step)
        others = nbr != jnp.arange(self.n)[:, None]
        listed = jnp.sum((w != 0) & others).astype(jnp.float32) / self.n
        if self.averaging is None:
            return listed
        return jnp.where(self._averaging_at(step) != 0, jnp.float32(self.n - 1), listed)

    def copies_sent(self, step: Any = 0) -> jax.Array:
        if self.averaging is None:
            return self.messages_per_worker(step)
        return jnp.where(
            self._averaging_at(step) != 0,
            self._everyone().copies_sent(step),
            self.messages_per_worker(step),
        )

    def _everyone(self) -> Average:
        """The averaging members as an :class:`Average` (lists dropped)."""
        return Average(weights=self.averaging, exchange=self.exchange, **self.common_fields())

    def exchange_of_average(self) -> str | None:
        return None if self.averaging is None else self._everyone().exchange_of_average()

    def allreduce_loads(self, steps: jax.Array, nbytes: jax.Array) -> jax.Array:
        if self.averaging is None:
            return jnp.zeros((), jnp.float32)
        return self._everyone().allreduce_loads(steps, nbytes)

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """``O(n k m)`` edges from the neighbour lists of each term."""
        nbr, w = jax.vmap(self.realized_lists)(jnp.asarray(steps))  # (m, n, k)
        sending = (w != 0) & (nbr != jnp.arange(self.n)[None, :, None])
        loads = jnp.where(sending, jnp.asarray(nbytes, jnp.float32)[:, None, None], 0.0)
        peers = jnp.moveaxis(nbr, 0, 1).reshape(self.n, -1)
        edges = row_edges(peers, jnp.moveaxis(loads, 0, 1).reshape(self.n, -1))
        if self.averaging is None:
            return edges
        everyone = self._everyone().link_loads(steps, nbytes)  # a member averages or has lists
        return Edges(*(jnp.concatenate([a, b]) for a, b in zip(edges, everyone, strict=True)))

    def max_degree(self) -> int:
        nbr = np.asarray(self.neighbors)
        w = np.asarray(self.weights)
        own = nbr == np.arange(self.n)[None, :, None]
        if self.averaging is not None and np.any(np.asarray(self.averaging)):
            return self.n - 1
        return int(((w != 0) & ~own).sum(axis=-1).max())

    def slackened(self, kappa: float) -> Sparse:
        w = self.weights
        self_slot = jnp.full((*w.shape[:-1], 1), 1 - kappa, w.dtype)
        own = jnp.broadcast_to(jnp.arange(self.n)[None, :, None], self_slot.shape)
        return self.replace(
            weights=jnp.concatenate([kappa * w, self_slot], axis=-1),
            neighbors=jnp.concatenate([self.neighbors, own.astype(self.neighbors.dtype)], -1),
            averaging=None if self.averaging is None else kappa * self.averaging,
        )

    def circulant_eigenvalues(self) -> np.ndarray | None:
        """Closed form when every row has the same offsets and weights (a ring stored as lists)."""
        if self.averaging is not None:
            return None
        nbr = np.asarray(jax.device_get(self.neighbors))
        w = np.asarray(jax.device_get(self.weights), np.float64)
        offsets = (nbr - np.arange(self.n)[None, :, None]) % self.n
        if not (np.all(offsets == offsets[:, :1]) and np.all(w == w[:, :1])):
            return None
        return circulant_spectrum(self.n, offsets[:, 0], w[:, 0])
