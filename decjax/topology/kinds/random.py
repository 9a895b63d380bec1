"""The random kind: ``W_t`` drawn afresh at every step, inside ``jit``, from a key and ``t``.

Every worker sends to ``s`` peers chosen at random at each step (``fold_in(key,
t)``, so a run is reproducible and never recompiles); what the receivers do
with the messages is the *law*:

``"epidemic"`` (Epidemic Learning, de Vos et al. 2023)
    ``s`` distinct random others; each receiver averages its own model with
    everything it received: ``W[i, j] = 1 / (1 + d_i^in)``. Row-stochastic.
``"s_out"`` (random s-out graphs of push-sum)
    ``s`` distinct random others; each sender splits its mass uniformly:
    ``W[i, j] = 1 / (s + 1)``. Column-stochastic (``topology.push``).
``"equi_dyn"`` (OD-EquiDyn, Song et al. 2022)
    one random offset ``u`` per step for everyone: ``i`` receives from
    ``i + u``, ``W = (1/n) I + ((n-1)/n) P^u``. Doubly stochastic.
``"ou_equi_dyn"`` (OU-EquiDyn, Song et al. 2022)
    one random offset ``u`` and start ``s`` per step: scanning ``s, s + 1,
    ...`` the pairs ``(i, i + u)`` of two unmatched workers are matched (a
    greedy matching, ``O(n)`` sequential work per step), each pair averages:
    ``W = (1/n) I + ((n-1)/n) M`` with ``M`` the matching (1 on the diagonal
    of the unmatched). Symmetric, doubly stochastic.

``weights`` holds the scalar mixing strength ``eta``: the matrix used is
``(1 - eta) I + eta W`` (``eta = 1`` is the law itself; ``lazy`` scales it).
Gossip is a scatter of ``s`` messages per worker, ``O(s n d)``, in the same
difference (or push) form as the other kinds. There are no fixed matrices to
analyse: ``matrix(step)`` is the one realized at ``step``, and
``decjax.spectral_gap`` / ``effective_neighbors`` use expectations over the
law (:meth:`Random.contraction`, :meth:`Random.second_moments`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._random import varied
from decjax.topology.base import Edges, Topology, as_weights, kind, row_edges, static

LAWS = ("epidemic", "s_out", "equi_dyn", "ou_equi_dyn")
ONE_PEER = ("equi_dyn", "ou_equi_dyn")


def greedy_matching(key: jax.Array, n: int) -> jax.Array:
    """``(n,)`` int32: each worker's partner (itself when unmatched) in OU-EquiDyn's matching.

    A random offset ``u`` in ``{1, ..., n - 1}`` and start ``s``; for ``i = s, s + 1,
    ...`` (mod ``n``) the pair ``(i, i + u)`` is matched when both are unmatched.
    """
    key_shift, key_start = jax.random.split(key)
    shift = jax.random.randint(key_shift, (), 1, n, dtype=jnp.int32)
    start = jax.random.randint(key_start, (), 0, n, dtype=jnp.int32)
    return match_pairs(shift, start, n)


def match_pairs(shift: jax.Array, start: jax.Array, n: int) -> jax.Array:
    """The greedy matching of the pairs ``(i, i + shift)`` scanned from ``start`` (jit-able)."""

    def scan(t, partner):
        i = (start + t) % n
        j = (i + shift) % n
        free = (partner[i] == i) & (partner[j] == j)
        return jnp.where(free, partner.at[i].set(j).at[j].set(i), partner)

    return jax.lax.fori_loop(0, n, scan, jnp.arange(n, dtype=jnp.int32))


def matched_pairs(n: int) -> np.ndarray:
    """``(n - 1,)`` the pairs OU-EquiDyn matches for each offset ``u = 1 .. n - 1`` (the
    same for every start: a rotation of start 0's), on the host."""
    shifts = np.arange(1, n)
    partner = np.tile(np.arange(n), (n - 1, 1))
    rows = np.arange(n - 1)
    for i in range(n):
        j = (i + shifts) % n
        free = (partner[:, i] == i) & (partner[rows, j] == j)
        partner[rows[free], i] = j[free]
        partner[rows[free], j[free]] = i
    return (partner != np.arange(n)).sum(axis=1) // 2


def distinct_others(key: jax.Array, n: int, s: int) -> jax.Array:
    """``(n, s)`` targets: for every worker, ``s`` distinct others uniformly at random.

    Floyd's sampling of ``s`` offsets from ``{1, ..., n - 1}``, vectorised over
    workers: ``O(n s^2)`` work, no ``(n, n)`` array.
    """
    keys = jax.random.split(key, s)
    chosen = jnp.zeros((n, 0), jnp.int32)
    for r, top in enumerate(range(n - 1 - s, n - 1)):
        pick = jax.random.randint(keys[r], (n,), 0, top + 1, dtype=jnp.int32)
        taken = jnp.any(chosen == pick[:, None], axis=1)
        chosen = jnp.concatenate([chosen, jnp.where(taken, top, pick)[:, None]], axis=1)
    return (jnp.arange(n, dtype=jnp.int32)[:, None] + chosen + 1) % n


@kind
class Random(Topology):
    """Fresh random ``W_t`` at each step (epidemic, random s-out, EquiDyn).

    ``key`` is the raw key data (``jax.random.key_data``); ``law`` and
    ``fanout`` (``s``) are static; ``weights`` is the scalar strength ``eta``.
    """

    key: Any
    law: str = static()
    fanout: int = static()

    representation: ClassVar[str] = "random"
    rank: ClassVar[int] = 4
    step_ndim: ClassVar[int] = 0
    convertible: ClassVar[bool] = False
    random: ClassVar[bool] = True

    @classmethod
    def sampled(cls, n: int, law: str, fanout: int, key, eta: float, name: str) -> Random:
        """A topology drawing ``law`` with ``fanout`` peers from ``key`` (a typed key) at every
        step, mixed with strength ``eta``; its stochasticity follows from the law."""
        return cls(
            n=n,
            period=1,
            name=name,
            key=jax.random.key_data(key),
            law=law,
            fanout=fanout,
            weights=as_weights(eta),
            row_stochastic=law != "s_out",
            column_stochastic=law != "epidemic",
        )

    @property
    def backends(self) -> tuple[str, ...]:
        return ("random",)

    # -- one step ---------------------------------------------------------------
    def targets(self, step: Any) -> jax.Array:
        """``(n, s)`` int32: whom each worker sends to at ``step``."""
        key = jax.random.fold_in(varied(jax.random.wrap_key_data(self.key)), jnp.asarray(step))
        n = self.n
        if self.law == "equi_dyn":
            shift = jax.random.randint(key, (), 1, n, dtype=jnp.int32)
            return ((jnp.arange(n, dtype=jnp.int32) - shift) % n)[:, None]
        if self.law == "ou_equi_dyn":  # one's partner, or oneself when unmatched
            return greedy_matching(key, n)[:, None]
        return distinct_others(key, n, self.fanout)

    def _receive(self, x: jax.Array, step: Any) -> tuple[jax.Array, jax.Array]:
        """The sum of what each worker receives, and how many messages (all ``n`` rows)."""
        targets = self.targets(step)
        flat = x.reshape(self.n, -1)
        senders = jnp.repeat(flat, targets.shape[1], axis=0)
        received = jnp.zeros_like(flat).at[targets.ravel()].add(senders)
        count = jnp.zeros((self.n,), x.dtype).at[targets.ravel()].add(1.0)
        return received, count

    def _coefficients(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per receiver: the weight of each message, and the weight it gives up (``(n,)``)."""
        eta = self.weights.astype(count.dtype)
        if self.law == "epidemic":
            share = eta / (1.0 + count)
            return share, share * count
        if self.law == "s_out":
            share = eta / (1.0 + self.fanout)
            return jnp.full_like(count, share), jnp.full_like(count, share * self.fanout)
        share = eta * (self.n - 1) / self.n
        return jnp.full_like(count, share), jnp.full_like(count, share)

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        everyone = _axis.gather_rows(x)
        received, count = self._receive(everyone, step)
        share, lost = self._coefficients(count)
        flat = everyone.reshape(self.n, -1)
        full = share[:, None] * received - lost[:, None] * flat
        return _axis.local_rows(full.reshape(everyone.shape))

    def step_matrix(self, step: Any) -> jax.Array:
        n = self.n
        targets = self.targets(step)
        senders = jnp.repeat(jnp.arange(n), targets.shape[1])
        count = jnp.zeros((n,), self.weights.dtype).at[targets.ravel()].add(1.0)
        share, lost = self._coefficients(count)
        links = jnp.zeros((n, n), self.weights.dtype).at[targets.ravel(), senders].add(1.0)
        return jnp.eye(n, dtype=links.dtype) * (1.0 - lost)[:, None] + share[:, None] * links

    def matrices(self) -> jax.Array:
        raise ValueError(self._no_fixed_matrices())

    def numpy_matrices(self) -> np.ndarray:
        raise ValueError(self._no_fixed_matrices())

    def lists(self):
        raise ValueError(self._no_fixed_matrices())

    def _no_fixed_matrices(self) -> str:
        return (
            f"{self.name} draws a new matrix at every step and has no fixed matrices: use "
            "topology.matrix(step), decjax.topology.realized_matrices(topology, steps), or "
            "spectral_gap / effective_neighbors (expectations over the law)"
        )

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        if self.law == "ou_equi_dyn":  # the matched workers send one message each
            sends = jnp.mean((self.targets(step)[:, 0] != jnp.arange(self.n)).astype(jnp.float32))
        else:
            sends = 1.0 if self.law == "equi_dyn" else float(self.fanout)
        return jnp.where(self.weights > 0, sends, 0.0).astype(jnp.float32)

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """``O(n s m)`` edges from each sender's targets (``s`` per worker and term)."""
        targets = jax.vmap(self.targets)(jnp.asarray(steps))  # (m, n, s)
        loads = jnp.where(self.weights > 0, jnp.asarray(nbytes, jnp.float32), 0.0)
        own = jnp.arange(self.n)[None, :, None]  # an unmatched worker sends nothing
        loads = jnp.where(targets != own, loads[:, None, None], 0.0)
        peers = jnp.moveaxis(targets, 0, 1).reshape(self.n, -1)
        loads = jnp.moveaxis(loads, 0, 1).reshape(self.n, -1)
        return row_edges(peers, loads, receivers_first=False)

    def max_degree(self) -> int:
        """The number of peers each worker *sends* to per step (in-degrees are random)."""
        return 1 if self.law in ONE_PEER else self.fanout

    def slackened(self, kappa: float) -> Random:
        return self.replace(weights=kappa * self.weights)

    # -- expectations over the law (host side, float64) ---------------------------
    def _in_degree_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Support and probabilities of a worker's in-degree ``Bin(n - 1, s / (n - 1))``."""
        from scipy import stats  # here: scipy.stats costs half of `import decjax`

        d = np.arange(self.n)
        return d, stats.binom.pmf(d, self.n - 1, self.fanout / (self.n - 1))

    def _rows(self) -> tuple[float, float]:
        """``(alpha, rho)``: ``alpha = E sum_j W_ij^2`` (a row's squared norm; also
        ``||W||_F^2 / n``) and ``rho = E (sum_j W_ij)^2`` (a row sum squared), exactly."""
        n, eta = self.n, float(self.weights)
        if self.law == "equi_dyn":
            b = eta * (n - 1) / n
            return (1 - b) ** 2 + b**2, 1.0
        d, pmf = self._in_degree_pmf()
        if self.law == "epidemic":  # a receiver of d messages weighs each eta / (1 + d)
            share = eta / (1.0 + d)
            return float(pmf @ ((1 - eta + share) ** 2 + d * share**2)), 1.0
        share = eta / (1 + self.fanout)  # s_out: every sender keeps 1 - s share
        kept = 1 - self.fanout * share
        columns = kept**2 + self.fanout * share**2  # squared norm of a column, the same mean
        return columns, float(pmf @ (kept + d * share) ** 2)

    def column_moment(self, draws: int = 4096) -> float:
        """``E (sum_i W_ij)^2``: a column sum squared (1 unless the law is epidemic, where
        it is estimated from ``draws`` realized matrices, key 0)."""
        if self.law != "epidemic":
            return 1.0
        n = self.n
        law = self.replace(key=jax.random.key_data(jax.random.key(0)))

        @jax.jit
        def mean_square(steps):
            sums = jax.vmap(lambda t: jnp.sum(law.step_matrix(t), axis=0))(steps)
            return jnp.mean(sums.astype(jnp.float32) ** 2)

        chunk = max(1, min(draws, 2**22 // max(n * n, 1)))
        starts = range(0, draws, chunk)
        return float(np.mean([mean_square(jnp.arange(s, s + chunk)) for s in starts]))

    def contraction(self) -> float:
        """``sup_{e ⟂ 1} E||W_t e||^2 / ||e||^2``: the mean-square contraction of the
        disagreement in one step (the spectral gap reported is ``1 - sqrt`` of it, as
        in :func:`decjax.topology.fault_statistics`).

        By exchangeability ``E[W^T W]`` has one eigenvalue on ``1^⟂``,
        ``(n alpha - rho) / (n - 1)`` with :meth:`_rows`'s ``alpha, rho``; for the
        epidemic law at ``eta = 1`` this is de Vos et al.'s
        ``(1/s)(1 - (1 - s/(n-1))^n) - 1/(n-1)`` (tested).
        """
        if self.n == 1:
            return 0.0
        if self.law == "ou_equi_dyn":
            return max(0.0, float(self._matching_spectrum()[1:].max()))
        alpha, rho = self._rows()
        return max(0.0, (self.n * alpha - rho) / (self.n - 1))

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

    def stationary_variance(self, gamma: float) -> float:
        """Vogels et al.'s ``v = sum_t gamma^(t-1) E||W_t ... W_1||_F^2 / n`` over the law.

        ``R_t = E[P_t P_t^T] = a_t I + b_t 11^T`` by exchangeability, with
        ``E[W W^T] = (alpha - beta) I + beta 11^T``, ``alpha + (n-1) beta =``
        :meth:`column_moment` and ``W 11^T W^T = 11^T`` (rows sum to one): so
        ``a_t = r^t``, ``b_t = beta (1 - r^t) / (1 - r)`` with ``r = alpha - beta``,
        summed in closed form.
        """
        if self.law == "ou_equi_dyn":
            return self._sampled_variance(gamma)
        alpha, _ = self._rows()
        beta = (self.column_moment() - alpha) / (self.n - 1) if self.n > 1 else 0.0
        r = alpha - beta
        series = r / (1 - gamma * r)
        if beta:
            series += beta / (1 - r) * (1 / (1 - gamma) - r / (1 - gamma * r))
        return series

    def _sampled_variance(self, gamma: float, chains: int = 64, probes: int = 64) -> float:
        """``stationary_variance`` estimated over realized matrices (OU-EquiDyn, whose
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
