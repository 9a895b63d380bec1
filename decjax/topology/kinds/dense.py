"""The matrix kind: the ``(T, n, n)`` stack itself, gossip as one matmul at ``HIGHEST``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax.topology.base import Topology, kind

if TYPE_CHECKING:
    import scipy.sparse


@kind
class Dense(Topology):
    """Any ``(T, n, n)`` matrices (also what a sweep over mixed topologies vmaps).

    Gossip is ``O(n^2 d)``: a matmul at ``precision=HIGHEST`` (the default
    float32 GPU matmul is TF32, whose ~1e-3 relative error ruins averaging).
    """

    weights: Any
    representation: ClassVar[str] = "dense"
    rank: ClassVar[int] = 3
    step_ndim: ClassVar[int] = 3

    @classmethod
    def convert(cls, source: Topology) -> Dense:
        # host-built (float64, then cast) when concrete
        return cls(weights=source.matrices(), **source.common_fields())

    def dense_weights(self) -> jax.Array:
        return self.weights

    def numpy_matrices(self) -> np.ndarray:
        return np.asarray(jax.device_get(self.weights), dtype=np.float64)

    def lists(self) -> tuple[jax.Array, jax.Array]:
        """Padded neighbour lists of the (concrete) matrices, built on the host."""
        mats = self.numpy_matrices()
        k = max(1, int((mats != 0).sum(axis=2).max()))
        nbr = np.tile(np.arange(self.n)[None, :, None], (len(mats), 1, k))
        w = np.zeros(nbr.shape)
        for t, m in enumerate(mats):
            for i in range(self.n):
                cols = np.flatnonzero(m[i])
                nbr[t, i, : len(cols)] = cols
                w[t, i, : len(cols)] = m[i, cols]
        return jnp.asarray(nbr, jnp.int32), jnp.asarray(w, jnp.asarray(self.weights).dtype)

    def mix_leaf(self, x: jax.Array, step: jax.Array) -> jax.Array:
        if not (self.row_stochastic or self.push):  # the stored self weight is part of the map
            return dense_product(self.matrix(step), x)
        return x + self.delta(x, step)

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        if self.push:
            return push_delta(self.matrix(step), x)
        if not self.row_stochastic:
            return dense_product(self.matrix(step), x) - x
        return dense_delta(self.matrix(step), x)

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        w = self.weights[jnp.asarray(step) % self.period]
        return jnp.sum((w != 0) & ~jnp.eye(self.n, dtype=bool)).astype(jnp.float32) / self.n

    def max_degree(self) -> int:
        w = np.asarray(self.weights)
        off = (w != 0) & ~np.eye(self.n, dtype=bool)[None]
        return int(off.sum(axis=-1).max())

    def slackened(self, kappa: float) -> Dense:
        eye = jnp.eye(self.n, dtype=self.weights.dtype)[None]
        return self.replace(weights=kappa * self.weights + (1 - kappa) * eye)

    def scipy_matrices(self) -> list[scipy.sparse.csr_matrix]:
        import scipy.sparse

        return [scipy.sparse.csr_matrix(m) for m in self.numpy_matrices()]


def dense_product(matrix: jax.Array, x: jax.Array) -> jax.Array:
    """``W x`` (local rows of it under a named worker axis), for rows that need not sum to one."""
    w = _axis.local_rows(matrix).astype(x.dtype)
    flat = _axis.gather_rows(x).reshape(matrix.shape[-1], -1)
    return jnp.matmul(w, flat, precision=jax.lax.Precision.HIGHEST).reshape(x.shape)


def dense_delta(matrix: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_j W_ij (x_j - x_i)`` for any ``(n, n)`` matrix, as one matmul.

    The diagonal is never read (the self weight is implicitly ``1 - sum_{j != i}
    W_ij``, as on the other kinds), and the matmul acts on the differences
    ``d = x - x_0`` from worker 0's row: ``(W_off d)_i - r_i d_i`` with ``r``
    the off-diagonal row sums. A consensus vector therefore gives exactly zero,
    and rounding scales with the disagreement between workers, not with ``x``:
    a float32 row summing to ``1 +- 3e-8`` no longer leaks ``3e-8 x`` per step
    into methods that integrate their iterates (D², exact diffusion, gradient
    tracking). Under a named worker axis the rows are all-gathered first.
    """
    n = matrix.shape[-1]
    off = jnp.where(jnp.eye(n, dtype=bool), 0.0, matrix).astype(x.dtype)
    off = _axis.local_rows(off)
    everyone = _axis.gather_rows(x)
    reference = everyone[:1]
    diffs = (everyone - reference).reshape(n, -1)
    local = (x - reference).reshape(x.shape[0], -1)
    pulled = jnp.matmul(off, diffs, precision=jax.lax.Precision.HIGHEST)
    return (pulled - jnp.sum(off, axis=1, keepdims=True) * local).reshape(x.shape)


def push_delta(matrix: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_{j != i} W_ij x_j - c_i x_i`` for a column-stochastic ``W`` (push-sum), as one
    matmul, with ``c_i = sum_{k != i} W_ki`` what worker ``i`` sends away.

    The diagonal is never read: each worker keeps ``1 - c_i`` of its mass, so the
    worker sum is preserved up to the rounding of the sent mass, whatever the
    float32 rounding of the stored weights.
    """
    n = matrix.shape[-1]
    off = jnp.where(jnp.eye(n, dtype=bool), 0.0, matrix).astype(x.dtype)
    sent = _axis.local_rows(jnp.sum(off, axis=0))
    everyone = _axis.gather_rows(x).reshape(n, -1)
    pulled = jnp.matmul(_axis.local_rows(off), everyone, precision=jax.lax.Precision.HIGHEST)
    local = x.reshape(x.shape[0], -1)
    return (pulled - sent[:, None] * local).reshape(x.shape)
