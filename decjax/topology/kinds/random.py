"""The random kind: ``W_t`` drawn afresh at every step, inside ``jit``, from a key and ``t``.

Every worker sends to ``s`` peers chosen at random at each step (``fold_in(key,
t)``, so a run is reproducible and never recompiles); what the receivers do
with the messages is the *law*, one class each (:class:`Epidemic`, :class:`SOut`,
:class:`EquiDyn`, :class:`OUEquiDyn`, subclasses of the kind :class:`Random`):

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

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._random import varied
from decjax.topology.base import Edges, Topology, as_weights, kind, row_edges, static


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
    """Fresh random ``W_t`` at each step: the kind, whose subclasses are the laws.

    ``key`` is the raw key data (``jax.random.key_data``); ``fanout`` (``s``) is
    static; ``weights`` is the scalar strength ``eta``. A law supplies whom each
    worker sends to (:meth:`draw_targets`), what a receiver does with the
    messages (:meth:`coefficients`) and its second moments (:meth:`row_moments`);
    the gossip, the realized matrix, the messages and the expectations are shared.
    """

    weights: Any
    key: Any
    fanout: int = static()

    representation: ClassVar[str] = "random"
    rank: ClassVar[int] = 4
    step_ndim: ClassVar[int] = 0
    convertible: ClassVar[bool] = False
    law: ClassVar[str]  # the law's name, e.g. "epidemic"
    row_stochastic_law: ClassVar[bool] = True
    column_stochastic_law: ClassVar[bool] = True

    @classmethod
    def sampled(cls, n: int, fanout: int, key, eta: float, name: str) -> Random:
        """A topology drawing this law with ``fanout`` peers from ``key`` (a typed key) at
        every step, mixed with strength ``eta``; its stochasticity follows from the law."""
        if cls is Random:
            raise TypeError("Random is the kind; build one of its laws (Epidemic, SOut, ...)")
        return cls(
            n=n,
            period=1,
            name=name,
            key=jax.random.key_data(key),
            fanout=fanout,
            weights=as_weights(eta),
            row_stochastic=cls.row_stochastic_law,
            column_stochastic=cls.column_stochastic_law,
        )

    @property
    def backends(self) -> tuple[str, ...]:
        return ("random",)

    def has_fixed_matrices(self) -> bool:
        return False

    def unstackable(self) -> str | None:
        return (
            "random topologies (a fresh matrix per step) cannot be stacked; sweep their keys "
            "by building one per run"
        )

    def expected_contraction(self) -> float | None:
        return self.contraction()

    def expected_variance(self, gamma: float) -> float | None:
        return self.stationary_variance(gamma)

    # -- the hooks a law implements ------------------------------------------------
    def draw_targets(self, key: jax.Array) -> jax.Array:
        """``(n, s)`` int32: whom each worker sends to, drawn from ``key`` (a worker that
        sends nothing targets itself)."""
        raise NotImplementedError

    def coefficients(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per receiver of ``count`` messages: the weight of each message, and the weight
        it gives up (``(n,)`` each)."""
        raise NotImplementedError

    def row_moments(self) -> tuple[float, float]:
        """``(alpha, rho)``: ``alpha = E sum_j W_ij^2`` (a row's squared norm; also
        ``||W||_F^2 / n``) and ``rho = E (sum_j W_ij)^2`` (a row sum squared), exactly."""
        raise NotImplementedError

    def max_degree(self) -> int:
        """The number of peers each worker *sends* to per step (in-degrees are random)."""
        return self.fanout

    def column_moment(self, draws: int = 4096) -> float:
        """``E (sum_i W_ij)^2``: a column sum squared (1 for a column-stochastic law)."""
        del draws
        return 1.0

    # -- one step ---------------------------------------------------------------
    def targets(self, step: Any) -> jax.Array:
        """``(n, s)`` int32: whom each worker sends to at ``step``."""
        key = jax.random.fold_in(varied(jax.random.wrap_key_data(self.key)), jnp.asarray(step))
        return self.draw_targets(key)

    def _receive(self, x: jax.Array, step: Any) -> tuple[jax.Array, jax.Array]:
        """The sum of what each worker receives, and how many messages (all ``n`` rows)."""
        targets = self.targets(step)
        flat = x.reshape(self.n, -1)
        senders = jnp.repeat(flat, targets.shape[1], axis=0)
        received = jnp.zeros_like(flat).at[targets.ravel()].add(senders)
        count = jnp.zeros((self.n,), x.dtype).at[targets.ravel()].add(1.0)
        return received, count

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        everyone = _axis.gather_rows(x)
        received, count = self._receive(everyone, step)
        share, lost = self.coefficients(count)
        flat = everyone.reshape(self.n, -1)
        full = share[:, None] * received - lost[:, None] * flat
        return _axis.local_rows(full.reshape(everyone.shape))

    def step_matrix(self, step: Any) -> jax.Array:
        n = self.n
        targets = self.targets(step)
        senders = jnp.repeat(jnp.arange(n), targets.shape[1])
        count = jnp.zeros((n,), self.weights.dtype).at[targets.ravel()].add(1.0)
        share, lost = self.coefficients(count)
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
        sends = float(self.max_degree())
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

    def slackened(self, kappa: float) -> Random:
        return self.replace(weights=kappa * self.weights)

    # -- expectations over the law (host side, float64) ---------------------------
    def _in_degree_pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Support and probabilities of a worker's in-degree ``Bin(n - 1, s / (n - 1))``."""
        from scipy import stats  # here: scipy.stats costs half of `import decjax`

        d = np.arange(self.n)
        return d, stats.binom.pmf(d, self.n - 1, self.fanout / (self.n - 1))

    def contraction(self) -> float:
        """``sup_{e ⟂ 1} E||W_t e||^2 / ||e||^2``: the mean-square contraction of the
        disagreement in one step (the spectral gap reported is ``1 - sqrt`` of it, as
        in :func:`decjax.topology.fault_statistics`).

        By exchangeability ``E[W^T W]`` has one eigenvalue on ``1^⟂``,
        ``(n alpha - rho) / (n - 1)`` with :meth:`row_moments`'s ``alpha, rho``; for the
        epidemic law at ``eta = 1`` this is de Vos et al.'s
        ``(1/s)(1 - (1 - s/(n-1))^n) - 1/(n-1)`` (tested).
        """
        if self.n == 1:
            return 0.0
        alpha, rho = self.row_moments()
        return max(0.0, (self.n * alpha - rho) / (self.n - 1))

    def stationary_variance(self, gamma: float) -> float:
        """Vogels et al.'s ``v = sum_t gamma^(t-1) E||W_t ... W_1||_F^2 / n`` over the law.

        ``R_t = E[P_t P_t^T] = a_t I + b_t 11^T`` by exchangeability, with
        ``E[W W^T] = (alpha - beta) I + beta 11^T``, ``alpha + (n-1) beta =``
        :meth:`column_moment` and ``W 11^T W^T = 11^T`` (rows sum to one): so
        ``a_t = r^t``, ``b_t = beta (1 - r^t) / (1 - r)`` with ``r = alpha - beta``,
        summed in closed form.
        """
        alpha, _ = self.row_moments()
        beta = (self.column_moment() - alpha) / (self.n - 1) if self.n > 1 else 0.0
        r = alpha - beta
        series = r / (1 - gamma * r)
        if beta:
            series += beta / (1 - r) * (1 / (1 - gamma) - r / (1 - gamma * r))
        return series
