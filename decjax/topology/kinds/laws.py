"""The laws of the :class:`~decjax.topology.kinds.Random` kind, one class each.

Each says whom a worker sends to at a step (:meth:`~Random.draw_targets`), what a
receiver does with the messages (:meth:`~Random.coefficients`) and the law's
second moments (:meth:`~Random.row_moments`), from which the kind computes the
expected contraction and Vogels et al.'s stationary variance.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax.topology.base import kind
from decjax.topology.kinds.random import Random, distinct_others, greedy_matching, matched_pairs


@kind
class Epidemic(Random):
    """Epidemic Learning (de Vos et al. 2023): ``s`` distinct random others; a receiver
    averages its model with everything it received, ``W[i, j] = 1 / (1 + d_i^in)``
    (times ``eta``). Row-stochastic."""

    law: ClassVar[str] = "epidemic"
    column_stochastic_law: ClassVar[bool] = False

    def draw_targets(self, key: jax.Array) -> jax.Array:
        return distinct_others(key, self.n, self.fanout)

    def coefficients(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        share = self.weights.astype(count.dtype) / (1.0 + count)
        return share, share * count

    def row_moments(self) -> tuple[float, float]:
        eta = float(self.weights)
        d, pmf = self._in_degree_pmf()  # a receiver of d messages weighs each eta / (1 + d)
        share = eta / (1.0 + d)
        return float(pmf @ ((1 - eta + share) ** 2 + d * share**2)), 1.0

    def column_moment(self, draws: int = 4096) -> float:
        """Estimated from ``draws`` realized matrices (key 0): the columns of an epidemic
        ``W`` do not sum to one."""
        n = self.n
        law = self.replace(key=jax.random.key_data(jax.random.key(0)))

        @jax.jit
        def mean_square(steps):
            sums = jax.vmap(lambda t: jnp.sum(law.step_matrix(t), axis=0))(steps)
            return jnp.mean(sums.astype(jnp.float32) ** 2)

        chunk = max(1, min(draws, 2**22 // max(n * n, 1)))
        starts = range(0, draws, chunk)
        return float(np.mean([mean_square(jnp.arange(s, s + chunk)) for s in starts]))


@kind
class SOut(Random):
    """Random s-out graphs of push-sum: ``s`` distinct random others; each sender splits
    its mass uniformly, ``W[i, j] = 1 / (s + 1)`` (times ``eta``). Column-stochastic
    (``topology.push``)."""

    law: ClassVar[str] = "s_out"
    row_stochastic_law: ClassVar[bool] = False

    def draw_targets(self, key: jax.Array) -> jax.Array:
        return distinct_others(key, self.n, self.fanout)

    def coefficients(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        share = self.weights.astype(count.dtype) / (1.0 + self.fanout)
        return jnp.full_like(count, share), jnp.full_like(count, share * self.fanout)

    def row_moments(self) -> tuple[float, float]:
        d, pmf = self._in_degree_pmf()
        share = float(self.weights) / (1 + self.fanout)  # every sender keeps 1 - s share
        kept = 1 - self.fanout * share
        columns = kept**2 + self.fanout * share**2  # squared norm of a column, the same mean
        return columns, float(pmf @ (kept + d * share) ** 2)


@kind
class EquiDyn(Random):
    """OD-EquiDyn (Song et al. 2022): one random offset ``u`` per step for everyone, ``i``
    receives from ``i + u``: ``W = (1 - b) I + b P^u`` with ``b = eta (n-1)/n``. Doubly
    stochastic."""

    law: ClassVar[str] = "equi_dyn"

    def draw_targets(self, key: jax.Array) -> jax.Array:
        shift = jax.random.randint(key, (), 1, self.n, dtype=jnp.int32)
        return ((jnp.arange(self.n, dtype=jnp.int32) - shift) % self.n)[:, None]

    def coefficients(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        share = self.weights.astype(count.dtype) * (self.n - 1) / self.n
        return jnp.full_like(count, share), jnp.full_like(count, share)

    def row_moments(self) -> tuple[float, float]:
        b = float(self.weights) * (self.n - 1) / self.n
        return (1 - b) ** 2 + b**2, 1.0

    def max_degree(self) -> int:
        return 1


@kind
class OUEquiDyn(EquiDyn):
    """OU-EquiDyn (Song et al. 2022): one random offset ``u`` and start ``s`` per step;
    scanning ``s, s + 1, ...`` the pairs ``(i, i + u)`` of two unmatched workers are
    matched (greedy, ``O(n)`` sequential work per step) and each pair averages:
    ``W = (1 - b) I + b M`` with ``M`` the matching. Symmetric, doubly stochastic."""

    law: ClassVar[str] = "ou_equi_dyn"

    def draw_targets(self, key: jax.Array) -> jax.Array:
        return greedy_matching(key, self.n)[:, None]  # one's partner, or oneself

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        """The matched workers send one message each: the mean over workers at ``step``."""
        sent = self.targets(step)[:, 0] != jnp.arange(self.n)
        return jnp.where(self.weights > 0, jnp.mean(sent.astype(jnp.float32)), 0.0)

    def contraction(self) -> float:
        if self.n == 1:
            return 0.0
        return max(0.0, float(self._matching_spectrum()[1:].max()))

    def _matching_spectrum(self) -> np.ndarray:
        """``(n,)`` eigenvalues of ``E[W^2]`` for OU-EquiDyn, exactly (mode 0 is 1).

        ``W = I - b L`` with ``L`` the matching's Laplacian and ``b = eta (n-1)/n``;
        ``L^2 = 2 L`` for a matching, so ``W^2 = I - 2 b (1 - b) L``. The law is
        rotation-invariant (a uniform start), so ``E[L]`` is circulant: the pair
        ``(0, k)`` is matched with probability ``m_u / n`` for ``k = u`` and
        ``k = n - u``, each offset ``u`` with probability ``1/(n-1)`` and ``m_u`` pairs
        (:func:`matched_pairs`); its eigenvalues are an FFT of that row.
        """
        n, eta = self.n, float(self.weights)
        b = eta * (n - 1) / n
        shifts, pairs = np.arange(1, n), matched_pairs(n)
        row = np.zeros(n)
        np.add.at(row, shifts, -pairs / (n * (n - 1)))
        np.add.at(row, n - shifts, -pairs / (n * (n - 1)))
        row[0] = -row[1:].sum()
        return 1.0 - 2.0 * b * (1.0 - b) * np.real(np.fft.fft(row))

    def stationary_variance(self, gamma: float, chains: int = 64, probes: int = 64) -> float:
        """Vogels et al.'s ``v``, estimated over realized matrices (OU-EquiDyn, whose
        second moments have no closed form here): ``chains`` sequences of ``W_t`` (key 0),
        each applied to ``probes`` Gaussian vectors (``E||P z||^2 = ||P||_F^2``), the terms
        summed until the disagreement has contracted by ``1e-8``, the rest (each term
        ``1/n``: the product is then ``11^T/n``) in closed form. About 1 % error (tested against the
        exact expectation over the law at ``n = 6``)."""
        n = self.n
        rate = max(self.contraction(), 1e-12)
        horizon = max(1, math.ceil(math.log(1e-8) / math.log(rate)) if rate < 1 else 2000)
        law = self.replace(key=jax.random.key_data(jax.random.key(0)))

        @jax.jit
        def norms(z):
            def chain(c, z):
                def one(x, t):
                    x = x + law.delta(x, c * horizon + t)
                    return x, jnp.sum(x * x) / (n * probes)

                return jax.lax.scan(one, z, jnp.arange(horizon))[1]

            return jax.vmap(chain)(jnp.arange(chains), z)

        z = jax.random.normal(jax.random.key(1), (chains, n, probes))
        terms = np.asarray(norms(z), np.float64).mean(axis=0)
        weights = gamma ** np.arange(horizon)
        return float(weights @ terms + gamma**horizon / (1 - gamma) / n)
