"""The two building blocks: run any optax transformation per worker, then combine by gossip."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax._validation import check_choice, check_int
from decjax.algorithms._common import (
    DecentralizedTransformation,
    Gossip,
    check_finite_numbers,
    constructor,
    from_step,
    local_then,
    zeros_count,
)
from decjax.byzantine.combine import Robust, neighbour_lists, robust_mix
from decjax.gossip import TRAFFIC, Links, Traffic, worker_bytes
from decjax.topology import Topology
from decjax.topology.kinds.faulty import Faulty
from decjax.topology.kinds.sparse import Sparse

ORDERS = ("atc", "parallel")


class PerWorker(optax.GradientTransformationExtraArgs):
    """An optax transformation applied to every worker separately (what :func:`per_worker`
    returns): :func:`decjax.chain` recognises it and does not map it over the workers again."""


def per_worker(tx: optax.GradientTransformation) -> PerWorker:
    """Apply ``tx`` independently to every worker (``jax.vmap`` over axis 0).

    Each worker keeps its own optimizer state (its own step count, moments,
    schedule position) and sees only its own gradient, exactly as if it ran
    ``tx`` alone. Params, updates and state are stacked ``(n, ...)`` trees.
    Extra keyword arguments are forwarded unchanged to every worker.

    Args:
      tx: any optax ``GradientTransformation`` (``adam``, a ``chain`` with
        clipping, a schedule...).

    Returns:
      A :class:`PerWorker` (an ``optax.GradientTransformationExtraArgs``) over
      stacked trees; ``per_worker`` of one is itself.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.per_worker(optax.adam(1e-3))
      >>> state = tx.init(jnp.zeros((8, 3)))
      >>> state[0].count.shape  # one Adam step counter per worker
      (8,)
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    if isinstance(tx, PerWorker):
        return tx  # already per worker: mapping again would map over its second axis
    check_finite_numbers("the optimizer", tx)
    tx = optax.with_extra_args_support(tx)

    def init(params):
        return jax.vmap(tx.init)(params)

    def update(updates, state, params=None, **extra_args):
        def one(u, s, p):
            return tx.update(u, s, p, **extra_args)

        return jax.vmap(one)(updates, state, params)

    return PerWorker(init, update)


class CombineState(NamedTuple):
    """State of :func:`combine`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count


@constructor
def combine(
    topology: Topology,
    *,
    order: str = "atc",
    rounds: int = 1,
    backend: str | None = None,
    average_every: int | None = None,
    robust: Robust | None = None,
    gossip_momentum: float = 0.0,
) -> DecentralizedTransformation:
    r"""Turn local updates into decentralized ones by gossiping the parameters.

    Given stacked params :math:`X` and local updates :math:`U` (e.g.
    :math:`U = -\eta G` from ``per_worker(optax.sgd(eta))``), return updates
    that move :math:`X` to

    .. math::

       X^+ = W_t (X + U) \quad \text{(``order="atc"``, adapt-then-combine)}, \qquad
       X^+ = W_t X + U \quad \text{(``order="parallel"``, Lian et al.)},

    i.e. the returned update is :math:`X^+ - X`. With ``rounds = k`` the
    product :math:`W_{t+k-1} \cdots W_t` replaces :math:`W_t`. With
    ``average_every = H``, every :math:`H`-th step uses exact averaging
    :math:`\mathbf{1}\mathbf{1}^\top/n` instead (Gossip-PGA; with ``solo``
    this is local SGD). The step counter lives in the state, so time-varying
    topologies work inside ``jit``/``scan``; ``bytes_sent`` counts the mean
    bytes each worker sent (peer-to-peer messages; an exact average is counted
    as a ring all-reduce, ``2 (n - 1) / n`` model copies).

    Args:
      topology: the communication graph.
      order: ``"atc"`` or ``"parallel"``.
      rounds: gossip rounds per step, ``>= 1``.
      backend: force a gossip backend (see :func:`decjax.mix`).
      average_every: ``None`` or ``H >= 1``: exact global averaging every ``H`` steps.
      robust: a :class:`decjax.byzantine.Robust`: Byzantine workers' messages and a robust
        rule in place of the linear combine (one round, no exact averaging).
      gossip_momentum: :math:`\\eta_g \\in [0, 1)`: the ``rounds`` are accelerated
        gossip (:func:`decjax.gossip.accelerated_mix`; e.g.
        :func:`decjax.gossip.optimal_momentum`), the same messages per round.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; its ``update`` requires ``params``.

    Examples:
      >>> import optax, decjax
      >>> dpsgd = decjax.chain(optax.sgd(0.1), decjax.combine(decjax.ring(8)))
    """
    gossip = Gossip(topology, rounds=rounds, backend=backend, momentum=gossip_momentum)
    check_choice("order", order, ORDERS)
    if robust is not None and gossip_momentum:
        raise ValueError("robust= combines one plain round: drop gossip_momentum=")
    if average_every is not None:
        average_every = check_int("average_every", average_every, minimum=1)
    lists = _robust_lists(robust, topology, gossip.rounds, average_every)

    def init(params):
        del params
        return CombineState(count=zeros_count())

    def step(updates, state, params, **extra_args):
        del extra_args

        def neighbours(tree):
            traffic = gossip.traffic(tree, state.count)
            if average_every is not None:  # the same record as everyone's, for lax.cond
                traffic[TRAFFIC] = traffic[TRAFFIC].replace(allreduce=jnp.float32(0.0))
            if robust is not None:
                return robust_mix(robust, lists, tree, state.count), traffic
            return gossip(tree, state.count), traffic

        def mixed(tree):
            if average_every is None:
                return neighbours(tree)
            is_average = (state.count + 1) % average_every == 0
            everyone = functools.partial(_everyone, topology=topology, rounds=gossip.rounds)
            return jax.lax.cond(is_average, everyone, neighbours, tree)

        if order == "atc":
            new, sent = mixed(optax.apply_updates(params, updates))
        else:
            mixed_params, sent = mixed(params)
            new = optax.apply_updates(mixed_params, updates)
        return new, CombineState(state.count + 1), sent

    tx = from_step(init, step)
    tx.byzantine = None if robust is None else robust.byzantine
    return tx


def _robust_lists(robust, topology: Topology, rounds: int, average_every) -> Sparse | Faulty | None:
    """The neighbour lists a robust combine gathers over (``None`` without one); refused
    with several rounds or exact averaging, which a robust rule does not compose with."""
    if robust is None:
        return None
    if not isinstance(robust, Robust):
        raise TypeError(f"robust must be a decjax.byzantine.Robust, got {type(robust).__name__}")
    if rounds != 1 or average_every is not None:
        raise ValueError(
            "robust= combines one round of neighbour messages: drop rounds= and average_every="
        )
    return neighbour_lists(topology, robust.rule, robust.byzantine)


def _everyone(tree, topology: Topology, rounds: int):
    """The exact average over all workers, and its record (a ring all-reduce: ``2 (n - 1) / n``
    copies sent per worker; the gossip phases stay empty)."""
    mean = jax.tree.map(lambda x: jnp.broadcast_to(_axis.mean_workers(x), x.shape), tree)
    size = jnp.float32(worker_bytes(tree))
    n = topology.n
    return mean, {
        "bytes_sent": 2 * (n - 1) / n * size,
        TRAFFIC: Traffic(links=Links.silent(topology, rounds), allreduce=size),
    }


@constructor
def decentralize(
    tx: optax.GradientTransformation,
    topology: Topology,
    *,
    order: str = "atc",
    rounds: int = 1,
    backend: str | None = None,
    average_every: int | None = None,
    robust: Robust | None = None,
    gossip_momentum: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    r"""Make any optax optimizer decentralized: ``chain(per_worker(tx), combine(topology))``.

    Every worker runs ``tx`` on its own gradient, then averages its parameters
    with its neighbours: :math:`X^+ = W_t(X + U(G))` (``order="atc"``).

    Examples:
      >>> import optax, decjax
      >>> tx = decjax.decentralize(optax.adam(1e-3), decjax.exponential(16))
    """
    return local_then(
        per_worker(tx),
        combine(
            topology,
            order=order,
            rounds=rounds,
            backend=backend,
            average_every=average_every,
            robust=robust,
            gossip_momentum=gossip_momentum,
        ),
    )
