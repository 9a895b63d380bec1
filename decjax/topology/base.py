"""The :class:`Topology` interface: who averages with whom, with which weight, at step ``t``.

Convention (used everywhere in decjax): ``W[i, j]`` is the weight worker ``i``
puts on worker ``j``'s model, so one gossip step is ``x_i <- sum_j W[i, j] x_j``,
i.e. ``X <- W X`` with workers stacked on axis 0.

A topology is one of a few *kinds*, each a small frozen pytree class in
:mod:`decjax.topology.kinds` that keeps the storage making gossip cheap and
can always produce the dense matrix for analysis: :class:`~decjax.topology.kinds.Average`,
:class:`~decjax.topology.kinds.Shift`, :class:`~decjax.topology.kinds.Sparse`
and :class:`~decjax.topology.kinds.Dense`. This module holds what every kind
shares; a kind supplies its storage and the hooks marked below. Adding a kind
(directed, time-varying random, ...) is adding one such class.

Time-varying topologies hold a period ``T`` and per-step weights; step ``t``
uses entry ``t mod T``, selected inside ``jit`` without recompiling.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, dataclass_transform

import jax
import jax.numpy as jnp
import numpy as np

from decjax.topology._lists import (  # noqa: F401 (re-exported: the kinds import them here)
    Edges,
    dense_from_lists,
    numpy_from_lists,
    row_edges,
)

if TYPE_CHECKING:
    import scipy.sparse

# Tolerance for row/column sums of a doubly stochastic matrix given in float32.
STOCHASTIC_ATOL = 1e-5

T = TypeVar("T")
KINDS: dict[str, type[Topology]] = {}  # representation name -> kind class (as they register)


def representations() -> tuple[str, ...]:
    """Every registered kind's name, cheapest gossip (lowest rank) first: discovered when
    asked, so a kind defined after ``import decjax`` is included."""
    return tuple(k.representation for k in sorted(KINDS.values(), key=lambda k: k.rank))


def backends_for(name: str) -> tuple[str, ...]:
    """The gossip backends a topology of kind ``name`` can be mixed with: itself, and the
    more general kinds with fixed matrices it converts to."""
    if name not in KINDS:
        raise ValueError(f"unknown kind {name!r}; the kinds are {representations()}")
    rank = KINDS[name].rank
    return tuple(
        b
        for b in representations()
        if b == name or (KINDS[b].rank >= rank and KINDS[b].convertible)
    )


def static(**kwargs) -> Any:
    """A dataclass field that is pytree metadata (hashed into the compiled program)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


@dataclass_transform(
    frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field,)
)
def kind(cls: type[T]) -> type[T]:
    """Class decorator for a kind: a frozen keyword-only dataclass, registered as a pytree.

    Fields marked :func:`static` are pytree metadata; the others are leaves.
    """
    cls = dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)(cls)
    return jax.tree_util.register_dataclass(cls)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Topology:
    """Mixing weights of a (possibly time-varying) communication graph.

    Build one with the constructors in :mod:`decjax.topology` (``ring``,
    ``exponential``, ``from_matrix``...), not with a kind class directly: they
    validate. A ``Topology`` is a frozen pytree, so it can be passed into
    ``jit``, and stacked topologies (see :func:`decjax.topology.stack`) can be
    ``vmap``-ed. ``topology.replace(name=...)`` gives a changed copy.

    Attributes:
      n: number of workers.
      period: number of distinct steps ``T`` (1 for a static graph).
      name: a short human-readable name, e.g. ``"ring"``.
      representation: the kind's name: ``"average"``, ``"shift"``, ``"sparse"``
        or ``"dense"`` (a class attribute).
      weights: per-step weights; shape ``(T,)`` (average), ``(T, k)`` (shift),
        ``(T, n, k)`` (sparse) or ``(T, n, n)`` (dense).
      row_stochastic: every row sums to one (within ``STOCHASTIC_ATOL``), so
        gossip runs in the exact difference form
        ``x_i + sum_{j != i} W_ij (x_j - x_i)`` and the stored self weight is
        never read. ``False`` only for matrices built with
        ``from_matrix(..., require_doubly_stochastic=False)`` whose rows do not
        sum to one; those are mixed as the plain product ``W x``, or, when
        ``column_stochastic``, in the push form below.
      column_stochastic: every column sums to one (true of every doubly
        stochastic topology). A topology that is column- but not
        row-stochastic (:attr:`push`) is a directed push-sum graph
        (:func:`decjax.topology.from_digraph`): each worker splits its mass
        over itself and its out-neighbours, and gossip evaluates the
        mass-conserving form ``x_i + sum_{j != i} W_ij x_j - c_i x_i`` with
        ``c_i = sum_{k != i} W_ki`` what ``i`` sends away, so the worker
        *sum* is preserved exactly (the self weight is again never read).
        Such a ``W`` does not average: the algorithms that need an averaging
        ``W`` refuse it, and the push-sum family (``sgp``, ``push_diging``)
        de-biases with a weight vector mixed alongside.
    """

    n: int = static()
    period: int = static()
    name: str = static()
    row_stochastic: bool = static(default=True)
    column_stochastic: bool = static(default=True)
    if TYPE_CHECKING:  # each kind declares its own (a wrapper kind reads its base's)
        weights: Any

    representation: ClassVar[str]
    rank: ClassVar[int]  # generality: a kind converts to any kind of higher rank
    step_ndim: ClassVar[int]  # axes of one step's weights: (), (k,), (n, k), (n, n) + 1
    has_lists: ClassVar[bool] = False  # neighbour lists are its natural (cheap) storage
    convertible: ClassVar[bool] = True  # has fixed matrices, so it converts to the kinds above

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("representation"), str):  # a storage, not a wrapper
            KINDS[cls.representation] = cls

    # -- the hooks a kind implements -------------------------------------------
    def has_fixed_matrices(self) -> bool:
        """Whether ``W_t`` is one of ``period`` fixed matrices (``False``: drawn afresh at
        every step, analysed through expectations over its law)."""
        return True

    def unstackable(self) -> str | None:
        """Why this topology cannot join a stack (one vmapped sweep), or ``None``."""
        return None

    def node_alive(self, step: Any) -> jax.Array:
        """``(n,)`` bool: which workers are up at ``step`` (all but under the faulty kind)."""
        del step
        return jnp.ones((self.n,), bool)

    def expected_contraction(self) -> float | None:
        """``sup_{e ⟂ 1} E||W_t e||^2 / ||e||^2`` over a random law; ``None`` for fixed
        matrices (the analysis then uses them)."""
        return None

    def expected_variance(self, gamma: float) -> float | None:
        """Vogels et al.'s stationary variance as an expectation over a random law;
        ``None`` for fixed matrices."""
        del gamma
        return None

    @classmethod
    def convert(cls, source: Topology) -> Topology:
        """``source`` stored as this kind (``source`` has a lower ``rank``)."""
        raise NotImplementedError

    def circulant_form(self) -> tuple[Any, jax.Array]:
        """Static offsets and ``(T, k)`` weights of a circulant kind (what :class:`Shift`
        converts from); only the kinds below ``Shift`` have one."""
        raise NotImplementedError

    def dense_weights(self) -> jax.Array:
        """The ``(T, n, n)`` stack of mixing matrices (jit-able; faults not applied)."""
        raise NotImplementedError

    def numpy_matrices(self) -> np.ndarray:
        """``matrices()`` as a float64 numpy array, built on the host (for analysis)."""
        raise NotImplementedError

    def lists(self) -> tuple[jax.Array, jax.Array]:
        """Neighbour indices ``(T, n, k)`` and weights ``(T, n, k)`` (faults not applied)."""
        raise NotImplementedError

    def delta(self, x: jax.Array, step: jax.Array) -> jax.Array:
        """``W_t x - x`` for one leaf in its compute dtype, in the exact difference form.

        ``sum_j W_ij (x_j - x_i)``: the self weight is implicitly
        ``1 - sum_{j != i} W_ij``, so a consensus vector is mixed to itself
        *exactly* even though weights such as 1/3 are inexact in float32, and
        near consensus the result carries the rounding of the (small)
        differences, not of ``x``. Under a named worker axis
        (:mod:`decjax._axis`) ``x`` is a block of rows and the kind uses
        collectives.
        """
        raise NotImplementedError

    def messages_per_worker(self, step: Any = 0) -> jax.Array:
        """Mean number of *other* workers each worker receives from at ``step`` (jit-able)."""
        raise NotImplementedError

    def max_degree(self) -> int:
        """Largest number of *other* workers any worker receives from at a step."""
        raise NotImplementedError

    def copies_sent(self, step: Any = 0) -> jax.Array:
        """Mean number of model copies each worker sends at ``step`` (jit-able): one per
        message here; an exact average done as a ring all-reduce sends ``2 (n - 1) / n``."""
        return self.messages_per_worker(step)

    def allreduce_loads(self, steps: jax.Array, nbytes: jax.Array) -> jax.Array:
        """Bytes per worker a phase averages over all workers with an all-reduce (float32).

        The terms ``m`` (rounds ``steps[m]``, ``nbytes[m]`` bytes) whose ``W`` averages
        everyone, on a kind that communicates that average as a collective
        (``exchange="allreduce"``); those terms are absent from :meth:`link_loads`.
        0 here: every message is a link.
        """
        del steps, nbytes
        return jnp.zeros((), jnp.float32)

    def exchange_of_average(self) -> str | None:
        """How this topology's exact averages travel: ``"allreduce"`` (a ring all-reduce,
        what a real system does) or ``"all_to_all"`` (``n - 1`` sends per worker); ``None``
        when it never averages over everyone by a collective."""
        return None

    def stack_lists(self) -> tuple[Any, Any, Any] | None:
        """``(T, n, k)`` neighbours and weights and ``(T,)`` averaging strengths, for
        :func:`decjax.topology.stack`; ``None`` when the kind has no such form (dense
        matrices, random draws). Kinds with neighbour lists give them and no averaging."""
        if not self.has_lists:
            return None
        nbr, w = self.lists()
        return nbr, w, jnp.zeros((self.period,), jnp.asarray(w).dtype)

    def link_loads(self, steps: jax.Array, nbytes: jax.Array) -> Edges:
        """The messages of one communication phase as an edge list (jit-able).

        The phase sends ``nbytes[m]`` bytes on every link ``j -> i`` (``i != j``,
        ``W_{steps[m]}[i, j] != 0``) for each term ``m``; a link used by several
        terms carries the sum of their bytes. Returns ``(receivers, senders,
        bytes)``, each of a static length ``E``; every link appears once with
        ``bytes > 0`` (other entries are padding with 0 bytes). This default
        reads the dense matrices, ``E = n^2``; a kind with a cheaper storage
        (offsets, neighbour lists, targets) overrides it with ``E = O(edges)``.
        """
        n = self.n
        others = ~jnp.eye(n, dtype=bool)
        loads = jax.vmap(lambda s, b: jnp.where((self.step_matrix(s) != 0) & others, b, 0.0))(
            jnp.asarray(steps), jnp.asarray(nbytes, jnp.float32)
        )
        rows = jnp.arange(n, dtype=jnp.int32)
        return Edges(jnp.repeat(rows, n), jnp.tile(rows, n), jnp.sum(loads, axis=0).reshape(-1))

    def slackened(self, kappa: float) -> Topology:
        """``kappa W + (1 - kappa) I`` in the same kind (see :func:`decjax.topology.lazy`)."""
        raise NotImplementedError

    def circulant_eigenvalues(self) -> np.ndarray | None:
        """``(T, n)`` eigenvalues of each ``W_t`` in closed form, or None if not circulant.

        Faults are ignored (the base graph is analysed), as everywhere in analysis.
        """
        return None

    def scipy_matrices(self) -> list[scipy.sparse.csr_matrix]:
        """Each ``W_t`` as a scipy CSR matrix built from neighbour lists (``O(k n)`` memory).

        The self weight is implicit (``1 - sum`` of the others), as in gossip.
        """
        import scipy.sparse  # here: it costs `import decjax` 0.14 s

        nbr, w = (np.asarray(jax.device_get(a)) for a in self.lists())
        n = self.n
        rows = np.broadcast_to(np.arange(n)[:, None], nbr.shape[1:])
        out = []
        for t in range(self.period):
            off = np.where(nbr[t] == rows, 0.0, w[t].astype(np.float64))
            if self.push:  # the self weight is 1 - what the worker sends away
                diag = 1.0 - np.bincount(nbr[t].ravel(), off.ravel(), minlength=n)
            else:
                diag = 1.0 - off.sum(axis=1)
            m = scipy.sparse.coo_matrix((off.ravel(), (rows.ravel(), nbr[t].ravel())), shape=(n, n))
            out.append((m + scipy.sparse.diags(diag)).tocsr())
        return out

    # -- shared behaviour --------------------------------------------------------
    def mix_leaf(self, x: jax.Array, step: jax.Array) -> jax.Array:
        """``W_t x`` for one leaf in its compute dtype."""
        return x + self.delta(x, step)

    def to(self, representation: str) -> Topology:
        """This topology stored as another kind (one it can be mixed with: see ``backends``)."""
        if representation == self.representation:
            return self
        if representation not in self.backends:
            raise ValueError(
                f"a {self.representation!r} topology ({self.name}) cannot be stored as "
                f"{representation!r}; it converts to {self.backends}"
            )
        return KINDS[representation].convert(self)

    def common_fields(self) -> dict[str, Any]:
        """The fields every kind has, except ``weights`` (for building another kind)."""
        return {
            "n": self.n,
            "period": self.period,
            "name": self.name,
            "row_stochastic": self.row_stochastic,
            "column_stochastic": self.column_stochastic,
        }

    def replace(self, **changes) -> Self:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        tv = f", period={self.period}" if self.period > 1 else ""
        return f"Topology({self.name}, n={self.n}{tv}, representation={self.representation!r})"

    @property
    def push(self) -> bool:
        """Column- but not row-stochastic: a directed push-sum graph, mixed in push form."""
        return self.column_stochastic and not self.row_stochastic

    @property
    def is_time_varying(self) -> bool:
        return self.period > 1

    @property
    def backends(self) -> tuple[str, ...]:
        """Gossip backends this topology can be mixed with (cheapest first).

        A kind converts only "downward", to a more general one, inside jit.
        """
        return backends_for(self.representation)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes of a stacked topology (:func:`stack`); ``()`` for one topology."""
        shape = jnp.shape(self.weights)
        return tuple(shape[: len(shape) - self.step_ndim])

    def _unbatched(self, method: str, *args):
        """Apply ``method`` to each topology of a stacked one (vmapped over the batch axes)."""
        fn = lambda topology: getattr(topology, method)(*args)  # noqa: E731
        for _ in self.batch_shape:
            fn = jax.vmap(fn)
        return fn(self)

    def matrices(self) -> jax.Array:
        """All ``T`` dense mixing matrices, shape ``(T, n, n)`` (works under jit).

        For a stacked topology, ``(*batch_shape, T, n, n)``.
        """
        if self.batch_shape:
            return self._unbatched("matrices")
        if isinstance(self.weights, jax.core.Tracer):
            return self.dense_weights()
        return jnp.asarray(self.numpy_matrices(), dtype=jnp.asarray(self.weights).dtype)

    def matrix(self, step: Any = 0) -> jax.Array:
        """The dense ``(n, n)`` matrix ``W_t`` used at ``step`` (``t = step mod T``).

        With faults (:class:`~decjax.topology.kinds.Faulty`), the matrix realized at
        ``step`` (failed links and nodes removed).
        For a stacked topology, one matrix per member: ``(*batch_shape, n, n)``.
        """
        if self.batch_shape:
            return self._unbatched("matrix", step)
        return self.step_matrix(step)

    def step_matrix(self, step: Any) -> jax.Array:
        """``matrix(step)`` of a single topology (the faulty kind overrides it)."""
        return self.matrices()[jnp.asarray(step) % self.period]


def check_topology(name: str, value: Any) -> None:
    """``value`` is a :class:`Topology`, refused in one line otherwise."""
    if not isinstance(value, Topology):
        raise TypeError(f"{name} must be a Topology, got {type(value).__name__}")


def weight_dtype() -> np.dtype:
    """Float64 when ``jax_enable_x64`` is on, else float32: weights follow the precision."""
    return np.dtype(np.float64 if jax.config.read("jax_enable_x64") else np.float32)


def as_weights(x) -> jax.Array:
    """Weights (computed in float64 on the host) in :func:`weight_dtype`."""
    return jnp.asarray(np.asarray(x, dtype=np.float64), dtype=weight_dtype())
