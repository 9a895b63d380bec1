"""Consensus control: adaptively many gossip rounds per step to keep the consensus distance low."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax._validation import check_choice, check_in_range, check_int, check_positive, is_traced
from decjax.algorithms._combine import per_worker
from decjax.algorithms._common import check_stochastic, constructor, from_step, local_then
from decjax.gossip import TRAFFIC, Traffic, bytes_per_round, link_bytes, mix, resolve_backend
from decjax.metrics import consensus_distance, sum_of_squares
from decjax.topology import Topology, spectral_gap


class ConsensusControlState(NamedTuple):
    """State of the gossip stage of :func:`consensus_control`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    gossip_rounds: jax.Array  # int32: cumulative gossip rounds (selects W for time-varying)
    last_rounds: jax.Array  # int32: rounds used at the last step
    estimate: jax.Array  # float32: estimated consensus distance after the last step


def reference_target(
    steps, values, *, fraction: float = 1.0, until: int | None = None
) -> Callable[[jax.Array], jax.Array]:
    """A target schedule: ``fraction`` times a reference run's consensus distance.

    ``steps``/``values`` are e.g. ``result.steps`` and
    ``result.metrics["consensus_distance"]`` of an uncontrolled run; the target
    at step ``t`` interpolates them. After ``until`` (e.g. the end of the first
    learning-rate phase) the target is infinite: no extra rounds.

    Examples:
      >>> import decjax
      >>> target = decjax.algorithms.reference_target([10, 20], [1.0, 0.5], fraction=0.5, until=15)
      >>> float(target(10)), float(target(16))
      (0.5, inf)
    """
    steps = np.asarray(steps, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if steps.ndim != 1 or steps.shape != values.shape or steps.size == 0:
        raise ValueError("steps and values must be 1-D arrays of the same non-zero length")
    check_positive("fraction", fraction)
    if until is not None:
        until = check_int("until", until, minimum=0)

    def target(count):
        value = fraction * jnp.interp(jnp.asarray(count, jnp.float32), steps, values)
        if until is None:
            return value
        return jnp.where(count < until, value, jnp.inf)

    return target


@constructor
def consensus_control(
    tx: optax.GradientTransformation,
    topology: Topology,
    *,
    target: float | Callable[[jax.Array], jax.Array],
    max_rounds: int = 20,
    estimator: str = "gossip",
    spectral_gap_value: float | None = None,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Decentralized training that controls the consensus distance (Kong et al., 2021).

    Each worker takes a local step with ``tx`` (:math:`X_{1/2} = X + U`), then
    gossip rounds :math:`X_{1/2} \leftarrow W X_{1/2}` are repeated — at least
    one, at most ``max_rounds`` — until the estimated consensus distance
    :math:`\hat\Xi^2 = \frac1n\sum_i\lVert x_i - \bar x\rVert^2` is at most
    ``target(t)``. The number of rounds is data-dependent inside ``jit``
    (``lax.while_loop``): each step reports its ``gossip_rounds`` and
    ``bytes_sent`` (``simulate`` records both, cumulative); the state keeps
    the cumulative rounds, ``last_rounds`` and ``estimate``.

    Estimators:

    * ``"gossip"`` (cheap, from what gossip computes anyway): each worker knows
      how far its model moved in the last round; with :math:`\Delta = X_r - X_{r-1}`
      and spectral gap :math:`\delta` (:math:`\lambda = 1 - \delta`),
      :math:`\hat\Xi^2 = \lambda^2 \lVert\Delta\rVert_F^2 / (n\,\delta^2)`, an upper
      bound on :math:`\Xi^2(X_r)` for a symmetric :math:`W`. Needs one scalar
      all-reduce per round.
    * ``"exact"``: the true :math:`\Xi^2` (an all-reduce of the model in a real system).

    Args:
      tx: the local optax optimizer each worker runs (e.g. ``optax.sgd(0.1, 0.9)``).
      topology: the communication graph.
      target: the consensus distance to reach: a float ``> 0`` or a schedule
        ``target(step)`` (see :func:`reference_target`; return ``inf`` to stop
        controlling, e.g. after the first learning-rate phase).
      max_rounds: cap on rounds per step, ``>= 1``.
      estimator: ``"gossip"`` or ``"exact"``.
      spectral_gap_value: :math:`\delta` for the ``"gossip"`` estimator; by
        default the spectral gap of the (static, concrete) topology.
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.consensus_control(optax.sgd(0.1), decjax.ring(4), target=1e-3)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [1.3815, 1.3938, 1.4062, 1.4185]

    References:
      Kong, Lin, Koloskova, Jaggi, Stich. *Consensus Control for Decentralized
      Deep Learning*, ICML 2021 (arXiv:2102.04828).
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    backend = resolve_backend(topology, backend)
    check_stochastic(topology, "row")
    if not callable(target):
        check_positive("target", target)
    max_rounds = check_int("max_rounds", max_rounds, minimum=1)
    estimate = _estimator(estimator, topology, spectral_gap_value)
    gossip = _gossip_until_target(topology, target, max_rounds, estimate, backend)
    return local_then(per_worker(tx), gossip)


def _estimator(estimator: str, topology: Topology, spectral_gap_value) -> Callable:
    """``estimate(new, old)``: the consensus distance after a round, exact or from the move."""
    check_choice("estimator", estimator, ("gossip", "exact"))
    if estimator == "exact":
        return lambda new, old: consensus_distance(new)
    if spectral_gap_value is None:
        if topology.is_time_varying or is_traced(topology.weights):
            raise ValueError(
                "estimator='gossip' needs spectral_gap_value for a time-varying or traced "
                "topology (or use estimator='exact')"
            )
        spectral_gap_value = spectral_gap(topology)
    check_in_range("spectral_gap_value", spectral_gap_value, 0.0, 1.0, closed="right")
    lam, n = 1.0 - spectral_gap_value, topology.n

    def from_move(new, old):
        moved = sum_of_squares(optax.tree.sub(new, old)) / n
        return lam**2 * moved / spectral_gap_value**2

    return from_move


def _gossip_until_target(topology, target, max_rounds, estimate, backend):
    """The gossip stage: rounds of ``W`` until ``estimate <= target(t)`` (or ``max_rounds``)."""

    def init(params):
        del params
        zero = jnp.zeros((), jnp.int32)
        return ConsensusControlState(zero, zero, zero, jnp.zeros(()))

    def step(updates, state, params, **extra_args):
        del extra_args
        goal = target(state.count) if callable(target) else target
        half = optax.apply_updates(params, updates)

        def one_round(carry):
            r, x, _, sent = carry
            round_index = state.gossip_rounds + r
            new = mix(topology, x, round_index, backend=backend)
            sent = sent + bytes_per_round(topology, x, round_index)
            return r + 1, new, estimate(new, x), sent

        def keep_going(carry):
            r, _, est, _ = carry
            return (r < max_rounds) & (est > goal)

        carry = one_round((jnp.int32(0), half, jnp.float32(jnp.inf), jnp.float32(0.0)))
        rounds, new, est, sent = jax.lax.while_loop(keep_going, one_round, carry)
        new_state = ConsensusControlState(
            state.count + 1, state.gossip_rounds + rounds, rounds, jnp.asarray(est, jnp.float32)
        )
        # one phase per possible round; the rounds not taken send nothing (and take no time)
        links = link_bytes(topology, half, state.gossip_rounds, rounds=max_rounds)
        links = links.scaled((jnp.arange(max_rounds) < rounds)[:, None])
        traffic = Traffic(links=links)
        return new, new_state, {"bytes_sent": sent, "gossip_rounds": rounds, TRAFFIC: traffic}

    return from_step(init, step)
