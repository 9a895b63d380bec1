"""Robust gossip: Byzantine workers' messages replaced by an attack, the linear combine by a rule.

:class:`Robust` is what an algorithm takes (``decjax.dpsgd(..., robust=...)``):
every worker receives its neighbours' current models over the topology's
neighbour lists (a gather, ``O(n k d)`` memory for ``k`` slots), the slots whose
sender is Byzantine carry the attack's vector instead, and each honest worker
replaces :math:`\\sum_j W_{ij} x_j` by the rule's aggregate of its own model and
what it received. The whole model is one vector here (norms and distances are
over all of a worker's parameters). Byzantine workers train like honest ones
(their own model is what :class:`~decjax.byzantine.attacks.SignFlip` negates)
but never combine: they keep their own model. Messages are counted exactly as
for plain gossip (the same links, the same bytes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax.byzantine.attacks import Attack, View
from decjax.byzantine.rules import Clipping, Rule
from decjax.topology import Topology
from decjax.topology.kinds.faulty import Faulty
from decjax.topology.kinds.sparse import Sparse


@dataclasses.dataclass(frozen=True)
class Byzantine:
    """Which workers are Byzantine (global indices) and what they send."""

    workers: tuple[int, ...]
    attack: Attack

    def __post_init__(self):
        workers = tuple(int(i) for i in np.asarray(self.workers, dtype=np.int64).reshape(-1))
        if len(set(workers)) != len(workers):
            raise ValueError(f"Byzantine.workers lists a worker twice: {workers}")
        if not isinstance(self.attack, Attack):
            raise TypeError(
                f"Byzantine.attack must be a decjax.byzantine attack (SignFlip(), ALIE(z), ...), "
                f"got {type(self.attack).__name__}"
            )
        object.__setattr__(self, "workers", workers)

    def mask(self, n: int) -> np.ndarray:
        """``(n,)`` bool: which workers are Byzantine; refused when an index is out of range
        or when no honest worker would be left."""
        if any(not 0 <= i < n for i in self.workers):
            raise ValueError(f"Byzantine.workers must be indices in [0, {n}), got {self.workers}")
        if len(self.workers) >= n:
            raise ValueError(f"{len(self.workers)} Byzantine workers leave no honest one of n={n}")
        out = np.zeros(n, bool)
        out[list(self.workers)] = True
        return out

    def honest(self, n: int) -> np.ndarray:
        """``(n,)`` bool: the honest workers (``~mask(n)``), what every record averages over."""
        return ~self.mask(n)


def place(n: int, count: int, *, seed: int = 0) -> tuple[int, ...]:
    """``count`` Byzantine workers out of ``n``, drawn uniformly without replacement (sorted)."""
    if not 0 <= count < n:
        raise ValueError(f"count must be in [0, n={n}) Byzantine workers, got {count}")
    chosen = np.random.default_rng(seed).choice(n, size=count, replace=False)
    return tuple(sorted(int(i) for i in chosen))


def place_by_degree(topology: Topology, count: int, *, highest: bool = True) -> tuple[int, ...]:
    """The ``count`` workers of highest (``highest=False``: lowest) degree on ``topology``
    (messages received per step, averaged over a time-varying topology's period; ties
    go to the lower index), sorted: hubs are where an attacker does the most harm."""
    lists = neighbour_lists(topology, Rule())
    if not 0 <= count < lists.n:
        raise ValueError(f"count must be in [0, n={lists.n}) Byzantine workers, got {count}")
    received = _received(*lists.lists()).mean(axis=0)
    order = np.lexsort((np.arange(lists.n), -received if highest else received))
    return tuple(sorted(int(i) for i in order[:count]))


@dataclasses.dataclass(frozen=True)
class Robust:
    """A robust combine: the rule every honest worker applies, and the Byzantine workers (if
    any). ``seed`` seeds random attacks (a fresh draw per step and receiver)."""

    rule: Rule = dataclasses.field(default_factory=Clipping)
    byzantine: Byzantine | None = None
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.rule, Rule):
            raise TypeError(
                "Robust.rule must be a decjax.byzantine rule (Clipping(), Median(), ...), got "
                f"{type(self.rule).__name__}"
            )
        if self.byzantine is not None and not isinstance(self.byzantine, Byzantine):
            raise TypeError(f"Robust.byzantine must be a Byzantine, got {self.byzantine!r}")


def neighbour_lists(
    topology: Topology, rule: Rule, byzantine: Byzantine | None = None
) -> Sparse | Faulty:
    """``topology`` as neighbour lists, refused when it has none or when some worker that
    combines (every honest one: ``byzantine`` workers never do) receives fewer messages
    than ``rule`` needs. A faulty topology keeps its faults over its base's lists (checked
    on the base graph: at a step, failed links deliver nothing and the rules take what
    arrives)."""
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if isinstance(topology, Faulty):  # the base's lists; a step receives on its live links
        return topology.replace(base=neighbour_lists(topology.base, rule, byzantine))
    if not topology.has_fixed_matrices():
        raise ValueError(
            f"robust gossip needs the graph's neighbour lists in advance, and {topology.name} "
            "draws its links at random at every step: not supported yet (faulty graphs are)"
        )
    if "sparse" in topology.backends:
        lists = topology.to("sparse")
    else:  # a matrix topology (from_matrix): its non-zeros
        lists = _lists_of_matrices(topology)
    if not isinstance(lists, Sparse):
        raise ValueError(
            f"robust gossip needs neighbour lists, and {topology.name} ({topology.representation}) "
            "has none: use a graph topology (ring, torus, exponential, from_networkx, ...)"
        )
    nbr, w = lists.lists()
    if isinstance(nbr, jax.core.Tracer) or isinstance(w, jax.core.Tracer):
        return lists  # rebuilt inside a traced program: checked when it was first built
    combining = np.ones(topology.n, bool) if byzantine is None else byzantine.honest(topology.n)
    received = _received(nbr, w)[:, combining].min()
    if received < rule.needs():
        raise ValueError(
            f"{type(rule).__name__} needs every worker to receive at least {rule.needs()} "
            f"messages, and on {topology.name} some receive {received}: use a denser topology "
            "or a smaller b / f"
        )
    return lists


def _received(nbr, w) -> np.ndarray:
    """``(T, n)``: how many messages each worker receives at each step of the period (its
    slots that hold another worker with a non-zero weight)."""
    nbr, w = np.asarray(nbr), np.asarray(w)
    return ((nbr != np.arange(nbr.shape[1])[None, :, None]) & (w != 0)).sum(axis=2)


def _lists_of_matrices(topology: Topology) -> Sparse:
    """A matrix topology (``from_matrix``) as compact neighbour lists: each row's non-zero
    off-diagonal entries, padded to the largest degree with the worker itself at weight 0."""
    matrices = topology.numpy_matrices()  # (T, n, n), float64 on the host
    period, n, _ = matrices.shape
    off = matrices.copy()
    off[:, np.arange(n), np.arange(n)] = 0.0
    slots = max(1, int((off != 0).sum(axis=-1).max()))
    neighbours = np.broadcast_to(np.arange(n)[None, :, None], (period, n, slots)).copy()
    weights = np.zeros((period, n, slots))
    for t in range(period):
        for i in range(n):
            columns = np.flatnonzero(off[t, i])
            neighbours[t, i, : columns.size] = columns
            weights[t, i, : columns.size] = off[t, i, columns]
    dtype = topology.matrices().dtype
    return Sparse(
        weights=jnp.asarray(weights, dtype),
        neighbors=jnp.asarray(neighbours, jnp.int32),
        **topology.common_fields(),
    )


def honest_fiedler(lists: Sparse | Faulty, honest: np.ndarray) -> np.ndarray:
    """``(n,)``: the Fiedler vector of the honest workers' weighted graph (its Laplacian's
    eigenvector of the second smallest eigenvalue, unit norm), 0 on Byzantine workers;
    weights symmetrised and averaged over a time-varying topology's period."""
    if not isinstance(lists, Sparse | Faulty):
        raise TypeError(
            "honest_fiedler takes the neighbour lists of neighbour_lists(topology, rule), got "
            f"{type(lists).__name__}"
        )
    traced_nbr, traced_w = lists.lists()
    if isinstance(traced_nbr, jax.core.Tracer) or isinstance(traced_w, jax.core.Tracer):
        raise ValueError(
            "the spectral attack reads the graph's Fiedler vector: build the topology outside "
            "the traced program (not a swept topology)"
        )
    nbr, w = np.asarray(traced_nbr), np.asarray(traced_w, np.float64)
    n = lists.n
    adjacency = np.zeros((n, n))
    for t in range(nbr.shape[0]):
        np.add.at(adjacency, (np.repeat(np.arange(n), nbr.shape[2]), nbr[t].ravel()), w[t].ravel())
    adjacency /= nbr.shape[0]
    adjacency = (adjacency + adjacency.T) / 2
    np.fill_diagonal(adjacency, 0.0)
    kept = np.flatnonzero(honest)
    sub = adjacency[np.ix_(kept, kept)]
    laplacian = np.diag(sub.sum(axis=1)) - sub
    out = np.zeros(n)
    if kept.size >= 2:
        out[kept] = np.linalg.eigh(laplacian)[1][:, 1]
    return out


def robust_mix(robust: Robust, lists: Sparse | Faulty, tree: Any, step: jax.Array) -> Any:
    """One round of robust gossip on ``tree`` (stacked per-worker models) at ``step``."""
    if not isinstance(robust, Robust) or not isinstance(lists, Sparse | Faulty):
        raise TypeError(
            "robust_mix takes a Robust and the neighbour lists of neighbour_lists(topology, rule), "
            f"got {type(robust).__name__} and {type(lists).__name__}"
        )
    x, unravel = _axis.flatten_rows(tree)
    n = lists.n
    if isinstance(lists, Faulty):  # only the links alive at this step deliver
        alive = lists.realized(step)
        assert isinstance(alive, Sparse)  # neighbour_lists made its base lists
        nbr_all, w_all = alive.realized_lists(0)
    else:
        nbr_all, w_all = lists.realized_lists(step)
    nbr, w = _axis.local_rows(nbr_all), _axis.local_rows(w_all).astype(x.dtype)
    rows = _axis.offset() + jnp.arange(x.shape[0])
    valid = (nbr != rows[:, None]) & (w != 0)
    everyone = _axis.gather_rows(x)
    neighbours = jnp.take(everyone, nbr, axis=0)  # (rows, k, d)
    if robust.byzantine is None:
        messages, byzantine_rows = neighbours, jnp.zeros(x.shape[0], bool)
    else:
        mask = jnp.asarray(robust.byzantine.mask(n))
        byzantine_rows = mask[rows]
        sent_by_byzantine = valid & mask[nbr]
        keys = jax.vmap(
            lambda r: jax.random.fold_in(jax.random.fold_in(jax.random.key(robust.seed), step), r)
        )(rows)
        fiedler, spectral = jnp.zeros((n,), x.dtype), jnp.zeros(x.shape[1:], x.dtype)
        if robust.byzantine.attack.uses_fiedler():  # an (n, d) product only when read
            fiedler = jnp.asarray(honest_fiedler(lists, robust.byzantine.honest(n)), x.dtype)
            spectral = jnp.matmul(fiedler, everyone, precision=jax.lax.Precision.HIGHEST)
        views = View(
            own=x,
            neighbours=neighbours,
            honest=valid & ~mask[nbr],
            byzantine=sent_by_byzantine,
            weights=w,
            receiver_honest=~byzantine_rows,
            key=keys,
            fiedler=fiedler[rows],
            spectral=jnp.broadcast_to(spectral, x.shape),
        )
        per_slot = jax.vmap(robust.byzantine.attack, in_axes=(None, 0))  # one view, k senders
        attacked = jax.vmap(per_slot)(views, neighbours)
        messages = jnp.where(sent_by_byzantine[..., None], attacked, neighbours)
    combined = jax.vmap(robust.rule)(x, messages, w, valid)
    return unravel(jnp.where(byzantine_rows[:, None], x, combined))
