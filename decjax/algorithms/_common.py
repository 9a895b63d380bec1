"""Pieces every algorithm shares: schedules, validation, gossip closures, the step protocol."""

from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax._closures import nonfinite_number
from decjax._validation import check_callable, check_in_range, check_int, check_positive, is_traced
from decjax.gossip import (
    TRAFFIC,
    Links,
    Traffic,
    accelerated_mix,
    bytes_per_round,
    link_bytes,
    mix,
    mix_delta,
    resolve_backend,
)
from decjax.topology import Topology


def learning_rate_at(learning_rate: Any, count: jax.Array) -> jax.Array:
    """The step size at ``count``: a constant, or an optax schedule evaluated at ``count``."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def check_learning_rate(learning_rate: Any) -> None:
    check_positive("learning_rate", learning_rate)


def check_finite_numbers(name: str, tx: Any) -> None:
    """Refuse an optax transformation holding a NaN or infinite number (``optax.sgd(nan)``):
    every update would be non-finite, and the run would blame the learning rate late."""
    found = nonfinite_number(tx)
    if found is not None:
        raise ValueError(
            f"{name} holds {found[0] or 'a number'}={found[1]}: a NaN or infinite "
            "hyperparameter (a learning rate?) makes every update non-finite"
        )


class Gossip:
    """``W_t`` applied to trees at a traced round, plus the bytes that round sends.

    A small closure object built once by each algorithm's factory, after the
    topology and backend are validated. With ``momentum`` :math:`\\eta_g > 0` the
    ``rounds`` are accelerated (Chebyshev / heavy-ball) gossip,
    :func:`decjax.gossip.accelerated_mix`: the same messages, another polynomial of W.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        rounds: int = 1,
        backend: str | None = None,
        needs: str = "row",
        momentum: float = 0.0,
    ):
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
        check_stochastic(topology, needs)
        self.topology = topology
        self.backend = resolve_backend(topology, backend)
        self.rounds = check_int("rounds", rounds, minimum=1)
        check_in_range("gossip_momentum", momentum, 0.0, 1.0, closed="left")
        self.momentum = momentum

    def __call__(self, tree: Any, step: jax.Array) -> Any:
        """``W_{t+k-1} ... W_t tree`` with ``t = step * rounds`` (with ``momentum``, the
        accelerated rounds' polynomial)."""
        t = step * self.rounds
        if self.momentum:
            return accelerated_mix(
                self.topology,
                tree,
                t,
                rounds=self.rounds,
                momentum=self.momentum,
                backend=self.backend,
            )
        return mix(self.topology, tree, t, rounds=self.rounds, backend=self.backend)

    def delta(self, tree: Any, step: jax.Array) -> Any:
        """``W_{t+k-1} ... W_t tree - tree``, without cancellation (see ``mix_delta``)."""
        t = step * self.rounds
        if self.momentum:
            raise ValueError(
                "gossip_momentum applies to algorithms that gossip their parameters "
                "(dpsgd, decentralize, combine)"
            )
        return mix_delta(self.topology, tree, t, rounds=self.rounds, backend=self.backend)

    def bytes(self, tree: Any, step: jax.Array, vectors: int = 1) -> jax.Array:
        """Mean bytes each worker sends for this step's ``rounds`` rounds of ``vectors`` trees."""
        t0 = step * self.rounds
        total = sum(
            bytes_per_round(self.topology, tree, t0 + r, vectors) for r in range(self.rounds)
        )
        return jnp.asarray(total, jnp.float32)

    def links(self, tree: Any, step: jax.Array, vectors: int = 1) -> Links:
        """The messages of this step's rounds, one phase each (see ``gossip.link_bytes``)."""
        return link_bytes(self.topology, tree, step * self.rounds, vectors, self.rounds)

    def traffic(self, tree: Any, step: jax.Array, vectors: int = 1) -> Info:
        """The step's record of what gossip sent: ``bytes_sent`` (see :meth:`bytes`) and its
        ``traffic`` (a :class:`~decjax.gossip.Traffic` of :meth:`links`, what the clock reads)."""
        return {
            "bytes_sent": self.bytes(tree, step, vectors),
            TRAFFIC: Traffic(links=self.links(tree, step, vectors)),
        }


def also_sent(first: Info, second: Info, when: Any = True) -> Info:
    """Two records of messages sent in the same rounds, the second counted only ``when``."""
    return {
        key: first[key].plus(second[key], when)
        if isinstance(first[key], Traffic)
        else first[key] + jnp.where(when, second[key], 0.0)
        for key in first
    }


FIXES = {
    "row": "use a topology that averages (any doubly stochastic one, e.g. decjax.ring(n)), or "
    "decjax.sgp / decjax.push_diging on a push-sum digraph",
    "column": "use a column-stochastic topology (decjax.topology.from_digraph, random_out) or a "
    "doubly stochastic one; on a row-stochastic graph use decjax.dpsgd",
    "doubly": "use a doubly stochastic topology (a ring, torus, exponential graph, a symmetric "
    "from_matrix); on a push-sum digraph use decjax.push_diging",
}


def check_stochastic(topology: Topology, needs: str) -> None:
    """Refuse a topology without the stochasticity an algorithm needs, in one line.

    ``needs``: ``"row"`` (``W`` averages: every row sums to one; D-PSGD and the
    methods built on it), ``"column"`` (``W`` conserves mass: push-sum) or
    ``"doubly"`` (both: gradient tracking, D², exact diffusion, DeTAG, whose
    trackers and corrections rely on the average being preserved). The flags
    are the topology's, set at construction with a tolerance
    (:data:`decjax.topology.base.STOCHASTIC_ATOL`).
    """
    rows, columns = topology.row_stochastic, topology.column_stochastic
    if {"row": rows, "column": columns, "doubly": rows and columns}[needs]:
        return
    if columns:
        have = "column- but not row-stochastic (a push-sum digraph: gossip on it does not average)"
    elif rows:
        have = "row- but not column-stochastic (it does not conserve the workers' sum)"
    else:
        have = "neither row- nor column-stochastic"
    raise ValueError(
        f"topology {topology.name} is {have}; this algorithm needs a {needs}-stochastic W: "
        f"{FIXES[needs]}"
    )


def concrete_matrices(topology: Topology) -> np.ndarray | None:
    """The float64 matrices of a concrete topology; None when its weights are traced."""
    if is_traced(topology.weights):
        return None
    return topology.numpy_matrices()


def zeros_count() -> jax.Array:
    return jnp.zeros((), jnp.int32)


Info = dict[str, Any]  # what one step reports: bytes sent, gossip rounds, staleness...


@runtime_checkable
class StepTransformation(Protocol):
    """The protocol of a transformation that returns new parameters and a per-step record.

    ``step(grads, state, params, **extra_args) -> (new_params, state, info)``,
    with ``info`` a dict of scalars for *this step only* (e.g. ``bytes_sent``:
    the mean bytes each worker sent; ``gossip_rounds``; ``staleness_sum``,
    ``staleness_count``, ``staleness_max``). :func:`apply_step`, which
    ``simulate`` uses, prefers ``step``, and ``simulate`` accumulates the
    records (:func:`decjax.metrics.accumulate`). ``init`` and ``update`` are
    optax's, so the transformation also composes with optax.
    """

    def init(self, params: Any) -> Any: ...

    def update(self, updates: Any, state: Any, params: Any = None, **extra_args) -> Any: ...

    def step(self, grads: Any, state: Any, params: Any, **extra_args) -> tuple[Any, Any, Info]: ...


class DecentralizedTransformation(optax.GradientTransformationExtraArgs):
    """An optax transformation that can also return the new parameters directly.

    ``update(grads, state, params) -> (updates, state)`` is the optax protocol
    (the caller adds the updates to the params). ``step(grads, state, params)
    -> (new_params, state, info)`` (the :class:`StepTransformation` protocol)
    skips that round trip: with gossip the new params are ``W(x + u)``, and
    ``x + (W(x + u) - x)`` costs one more pass over the parameters than
    ``W(x + u)``; it also reports what the step sent. :func:`apply_step` (used
    by ``simulate``) prefers ``step``; the compositions in decjax
    (:func:`local_then`, ``decentralize``, ``stragglers``, ``node_churn``)
    keep it, while a plain ``optax.chain`` sees an optax transformation.
    """

    def __new__(cls, init, update, step):
        self = super().__new__(cls, init, update)
        self.step = step
        if isinstance(update, types.FunctionType):  # what a bare optax.chain keeps of it
            update.decjax_step = step  # (decjax.chain's refusal finds it there)
        return self

    def apply(self, grads, state, params, **extra_args):
        """``(new_params, state)``: :meth:`step` without its record."""
        new, state, _ = self.step(grads, state, params, **extra_args)
        return new, state


def constructor(factory):
    """A public algorithm factory whose transformations record how they were built.

    ``tx.arguments`` is ``{"factory": name, argument: value, ...}`` (the call's
    arguments by name, defaults included): what a checkpoint compares, so a
    resume with another learning rate is refused naming ``learning_rate``. The
    outermost factory's record wins (``dpsgd`` builds with ``decentralize``).
    """
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__", "").startswith("optax.schedules._inject"):
            raise ValueError(
                f"optax.inject_hyperparams(decjax.{factory.__name__}) rebuilds the algorithm at "
                "every step and drops its record (bytes sent, simulated time): give the "
                f"learning rate as a schedule (decjax.{factory.__name__}(optax.cosine_decay_"
                "schedule(...), topology)), or compare values with decjax.sweep"
            )
        tx = factory(*args, **kwargs)
        if isinstance(tx, DecentralizedTransformation):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            tx.arguments = {"factory": factory.__name__, **bound.arguments}
        return tx

    return build


def from_step(init, step) -> DecentralizedTransformation:
    """Build a transformation from ``step(grads, state, params) -> (new_params, state, info)``."""
    check_callable("init", init)
    check_callable("step", step)

    def update(grads, state, params=None, **extra_args):
        if params is None:
            raise ValueError("this transformation needs params: tx.update(grads, state, params)")
        new, state, _ = step(grads, state, params, **extra_args)
        return jax.tree.map(lambda a, b: (a - b).astype(b.dtype), new, params), state

    return DecentralizedTransformation(init, update, step)


def apply_step(tx, grads, state, params, **extra_args) -> tuple[Any, Any, Info]:
    """``(new_params, state, info)``: ``tx.step`` if ``tx`` is a :class:`StepTransformation`,
    else ``update`` then ``optax.apply_updates`` (and an empty record)."""
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    if isinstance(tx, StepTransformation):
        return tx.step(grads, state, params, **extra_args)
    updates, state = tx.update(grads, state, params, **extra_args)
    return optax.apply_updates(params, updates), state, {}


def local_then(local: optax.GradientTransformation, last: StepTransformation):
    """``optax.chain(local, last)`` that keeps ``last``'s direct ``step``.

    ``local`` must act on each worker separately (a per-worker optimizer): its
    updates are fed to ``last``, whose step returns the new parameters.
    """
    check_finite_numbers("the local optimizer", local)
    local = optax.with_extra_args_support(local)
    chained = optax.chain(local, last)

    def step(grads, state, params, **extra_args):
        updates, first = local.update(grads, state[0], params, **extra_args)
        new, second, info = last.step(updates, state[1], params, **extra_args)
        return new, (first, second), info

    out = DecentralizedTransformation(chained.init, chained.update, step)
    out.byzantine = byzantine_of(last)
    return out


def byzantine_of(tx: Any):
    """The :class:`decjax.byzantine.Byzantine` workers of a transformation built with a
    robust combine (kept through :func:`local_then` and ``decjax.chain``), else ``None``:
    what ``simulate`` reads to keep them out of its records."""
    return getattr(tx, "byzantine", None)
