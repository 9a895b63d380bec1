"""The faulty kind: a fixed graph whose links and nodes fail at random, realized per step.

:class:`Faulty` wraps a :class:`~decjax.topology.kinds.Sparse` or
:class:`~decjax.topology.kinds.Dense` topology (its ``base``, what analysis
reads) and a :class:`FaultModel`. At step ``t`` every undirected edge fails
independently with probability ``p_t``, every node is down with probability
``q`` (for blocks of ``down_steps`` steps), an edge survives only if it did not
fail and both ends are up, and the weights are re-derived on the surviving graph
so gossip stays symmetric and doubly stochastic. The graph used at a step is the
base's kind with the surviving weights (:meth:`Faulty.realized`): gossip,
``matrix(step)``, message counts and link loads all read it. Realizations are
pure functions of ``(key, step)``: no state, no recompilation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from decjax._random import varied
from decjax._validation import check_choice, check_int
from decjax.topology.base import Edges, Topology, kind
from decjax.topology.kinds.dense import Dense
from decjax.topology.kinds.sparse import Sparse

REWEIGHT = ("metropolis", "self")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaultModel:
    """Random link failures and node outages (a frozen pytree; see :func:`with_faults`).

    Attributes:
      key: the failures' key (a typed key); realizations are functions of ``(key, step)``.
      link_prob: ``(P,)`` per-step probability that a link fails, cycled.
      node_prob: the probability that a worker is down, per block of ``down_steps``.
      down_steps: outages last blocks of this many steps (static).
      reweight: ``"metropolis"`` or ``"self"``: the weights on the surviving graph (static).
      scale: laziness ``kappa`` applied to realized edge weights (static).
    """

    key: Any
    link_prob: Any
    node_prob: Any
    down_steps: int = dataclasses.field(metadata={"static": True}, kw_only=True)
    reweight: str = dataclasses.field(metadata={"static": True}, kw_only=True)
    scale: float = dataclasses.field(default=1.0, metadata={"static": True}, kw_only=True)

    def __post_init__(self):
        check_choice("reweight", self.reweight, REWEIGHT)
        check_int("down_steps", self.down_steps, minimum=1)

    def scaled(self, kappa: float) -> FaultModel:
        """The same failures, realized weights multiplied by ``kappa`` (a lazier graph)."""
        return dataclasses.replace(self, scale=self.scale * kappa)

    def node_alive(self, step, n: int) -> jax.Array:
        """``(n,)`` bool: which workers are up at ``step``."""
        block = jnp.asarray(step) // self.down_steps
        k = jax.random.fold_in(jax.random.fold_in(varied(self.key), 1), block)
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(k, i)))(jnp.arange(n))
        return u >= self.node_prob

    def edge_alive(self, nbr: jax.Array, w: jax.Array, step) -> jax.Array:
        """``(n, k)`` bool: which neighbour slots carry a message at ``step``."""
        n = nbr.shape[0]
        rows = jnp.broadcast_to(jnp.arange(n)[:, None], nbr.shape)
        exists = (w != 0) & (nbr != rows)
        k = jax.random.fold_in(jax.random.fold_in(varied(self.key), 0), step)
        lo, hi = jnp.minimum(rows, nbr), jnp.maximum(rows, nbr)

        def uniform(a, b):  # the same number for (i, j) and (j, i)
            return jax.random.uniform(jax.random.fold_in(jax.random.fold_in(k, a), b))

        u = jax.vmap(jax.vmap(uniform))(lo, hi)
        p = self.link_prob[jnp.asarray(step) % self.link_prob.shape[0]]
        alive = self.node_alive(step, n)
        return exists & (u >= p) & alive[:, None] & alive[nbr]

    def realize(self, nbr: jax.Array, w: jax.Array, step) -> tuple[jax.Array, jax.Array]:
        """Neighbours and re-derived weights on the surviving graph at ``step``."""
        ok = self.edge_alive(nbr, w, step)
        if self.reweight == "self":
            # lost weight stays with oneself (w already carries any laziness)
            return nbr, jnp.where(ok, w, 0.0)
        degree = ok.sum(axis=1)
        mh = self.scale / (jnp.maximum(degree[:, None], degree[nbr]) + 1.0)
        return nbr, jnp.where(ok, mh, 0.0).astype(w.dtype)

    def realize_matrix(self, matrix: jax.Array, step) -> jax.Array:
        """The ``(n, n)`` matrix realized at ``step`` from the base ``matrix``.

        The same failures and weights as :meth:`realize` on neighbour lists (a
        link's random number depends on its two ends only), with each row's
        columns as its slots; the diagonal is ``1 - sum`` of the others.
        """
        n = matrix.shape[-1]
        columns = jnp.broadcast_to(jnp.arange(n)[None, :], (n, n))
        _, off = self.realize(columns, matrix, step)
        return off + jnp.diag(1.0 - off.sum(axis=1)).astype(off.dtype)


@kind
class Faulty(Topology):
    """A fixed graph with random link failures and node outages (see ``with_faults``).

    A wrapper, not a storage: its ``representation``, ``weights``, lists and
    matrices are its ``base``'s (analysis reads the graph without failures, as
    everywhere), and ``to(name)`` converts the base and keeps the failures. What
    happens at a step reads the graph realized there (:meth:`realized`).

    Attributes:
      base: the graph without failures, a :class:`Sparse` or :class:`Dense` topology.
      model: the :class:`FaultModel` realizing the failures.
    """

    base: Topology
    model: FaultModel

    def __post_init__(self):
        if not isinstance(self.base, Sparse | Dense):
            raise TypeError(
                f"Faulty wraps a sparse or dense topology, got a {self.base.representation!r} "
                "one (build it with decjax.topology.with_faults)"
            )

    @property
    def representation(self) -> str:  # type: ignore[override]
        return self.base.representation

    @property  # type: ignore[misc]
    def weights(self) -> Any:
        return self.base.weights

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.base.batch_shape

    @property
    def backends(self) -> tuple[str, ...]:
        return self.base.backends

    def to(self, representation: str) -> Faulty:
        """The same failures on the base stored as another kind."""
        return self.replace(base=self.base.to(representation))

    def unstackable(self) -> str | None:
        return (
            "topologies with faults cannot be stacked (their matrices are random per "
            "step); run them one by one"
        )

    def stack_lists(self) -> None:
        return None

    def node_alive(self, step: Any) -> jax.Array:
        return self.model.node_alive(step, self.n)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + ", with faults)"

    # -- analysis: the base graph -------------------------------------------------
    def dense_weights(self) -> jax.Array:
        return self.base.dense_weights()

    def numpy_matrices(self):
        return self.base.numpy_matrices()

    def matrices(self) -> jax.Array:
        return self.base.matrices()

    def lists(self) -> tuple[jax.Array, jax.Array]:
        return self.base.lists()

    def max_degree(self) -> int:
        return self.base.max_degree()

    def circulant_eigenvalues(self):
        return self.base.circulant_eigenvalues()

    def scipy_matrices(self):
        return self.base.scipy_matrices()

    def slackened(self, kappa: float) -> Faulty:
        return self.replace(base=self.base.slackened(kappa), model=self.model.scaled(kappa))

    # -- a step: the realized graph -------------------------------------------------
    def realized(self, step: Any) -> Topology:
        """The graph used at ``step``: the base's kind, period 1, only surviving links."""
        t = jnp.asarray(step) % self.period
        base = self.base
        if isinstance(base, Sparse):
            nbr, w = self.model.realize(base.neighbors[t], base.weights[t], step)
            return base.replace(neighbors=nbr[None], weights=w[None], period=1)
        matrix = self.model.realize_matrix(base.weights[t], step)
        return base.replace(weights=matrix[None], period=1)

    def step_matrix(self, step: Any) -> jax.Array:
        return self.realized(step).dense_weights()[0]  # lists: the lost weight is implicit

    def mix_leaf(self, x: jax.Array, step: jax.Array) -> jax.Array:
        return self.realized(step).mix_leaf(x, step)

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        return self.realized(step).delta(x, step)

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        return self.realized(step).messages_per_worker(0)

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """The base kind's edge list over the graphs realized at ``steps``."""
        steps = jnp.asarray(steps)
        m = steps.shape[0]
        each = jax.vmap(self.realized)(steps)  # leaves (m, 1, ...)
        realized = jax.tree.map(lambda a: a.reshape(m, *a.shape[2:]), each).replace(period=m)
        return realized.link_loads(jnp.arange(m), nbytes)
