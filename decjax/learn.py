"""Learned topologies: edge weights as parameters, ``jax.grad`` through the simulation.

A graph's edge weights become a parameter vector ``theta`` mapped to a
symmetric doubly stochastic ``W`` (the symmetric softmax of
:mod:`decjax.topology.learned`, which holds the parametrisation and the
objectives of ``W``, re-exported here). Any differentiable function of ``W``
can then be minimised with optax: the consensus distance after some gossip
rounds, the final loss of a short run of any algorithm (``jax.grad`` through
:func:`decjax.make_run`'s scans: :func:`training_objective`), the effective
number of neighbours ``n_W(gamma)``, or a heterogeneity-aware objective in the
spirit of STL-FW (Le Bars et al., AISTATS 2023); :func:`learn_weights` runs
the optimisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax._validation import check_int, check_positive
from decjax.algorithms import dpsgd
from decjax.data import WorkerData
from decjax.simulate import make_run
from decjax.topology import Topology
from decjax.topology.learned import (
    EdgeWeights,
    Objective,
    consensus_objective,
    heterogeneity_objective,
    label_proportions,
    neighbors_objective,
    neighbourhood_heterogeneity,
    traced_topology,
)

__all__ = [
    "EdgeWeights",
    "Learned",
    "Objective",
    "consensus_objective",
    "heterogeneity_objective",
    "label_proportions",
    "learn_weights",
    "neighbors_objective",
    "neighbourhood_heterogeneity",
    "traced_topology",
    "training_objective",
]

if TYPE_CHECKING:
    pass


def training_objective(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    steps: int,
    learning_rate: float,
    key: jax.Array,
    batch_size: int | None = None,
    eval_data: Any = None,
    algorithm: Callable[[Any, Topology], optax.GradientTransformation] = dpsgd,
) -> Objective:
    """The global loss after a short decentralized run on ``W``: differentiable in ``W``.

    The run is :func:`decjax.make_run` with ``algorithm(learning_rate, W)`` (by
    default :func:`decjax.dpsgd`; any factory of a learning rate and a topology,
    e.g. ``decjax.gradient_tracking`` or ``lambda lr, t: decjax.dpsgd(lr, t,
    momentum=0.9)``) on
    ``data`` (a :class:`decjax.data.WorkerData` with minibatches of
    ``batch_size`` drawn from ``key``, or stacked full-batch arrays); the
    returned value is the mean over workers of each final model's loss on
    ``eval_data`` (one batch), by default on the whole training set (every
    worker's shard), so a worker that fits only its own labels is penalised.
    A different ``key`` gives a held-out run (other minibatches).
    """
    check_positive("learning_rate", learning_rate)
    run = make_run(
        loss_fn,
        lambda w: algorithm(learning_rate, traced_topology(w)),
        steps=steps,
        batch_size=batch_size,
    )

    def global_loss(x):
        if eval_data is not None:
            return loss_fn(x, eval_data)
        if isinstance(data, WorkerData):  # the whole training set every shard comes from
            return loss_fn(x, (data.x, data.y))
        return jnp.mean(jax.vmap(lambda shard: loss_fn(x, shard))(data))  # every worker's data

    def objective(w):
        state, _ = run(params, key, data, None, {"w": w})
        return jnp.mean(jax.vmap(global_loss)(state.params))

    return objective


class Learned(NamedTuple):
    """What :func:`learn_weights` returns."""

    topology: Topology  # the learned weights, validated
    theta: jax.Array  # the final parameters
    history: np.ndarray  # the objective at every optimisation step
    initial: float  # the objective at the start (Metropolis–Hastings by default)


def learn_weights(
    graph,
    objective: Objective,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    theta: jax.Array | None = None,
    name: str = "learned",
) -> Learned:
    """Minimise ``objective(W)`` over the doubly stochastic weights of ``graph`` with Adam.

    The gradient is ``jax.grad`` through ``objective`` (a jitted simulation, a
    gossip power, ...) and the parametrisation; one compile, ``steps`` Adam
    steps; the best iterate is returned.

    Args:
      graph: an undirected networkx graph or a static topology (its support).
      objective: a function of the ``(n, n)`` matrix to a scalar.
      steps: optimisation steps.
      learning_rate: Adam's step size on ``theta``.
      theta: the start (default: Metropolis–Hastings weights).
      name: the learned topology's name.

    Examples:
      >>> import jax, networkx as nx, decjax
      >>> x0 = jax.random.normal(jax.random.key(0), (8, 4))
      >>> learned = decjax.learn.learn_weights(
      ...     nx.cycle_graph(8), decjax.learn.consensus_objective(x0, 5), steps=50)
      >>> bool(learned.history.min() < learned.initial)
      True
    """
    steps = check_int("steps", steps, minimum=1)
    check_positive("learning_rate", learning_rate)
    weights = EdgeWeights(graph)
    theta = weights.metropolis() if theta is None else jnp.asarray(theta)
    start = float(objective(weights.matrix(theta)))
    if not np.isfinite(start):
        raise ValueError(
            f"objective is {start} at the starting weights: nothing to minimise (is it defined "
            "for this graph's W?)"
        )
    optimizer = optax.adam(learning_rate)
    value_and_grad = jax.value_and_grad(lambda t: objective(weights.matrix(t)))

    @jax.jit
    def train(theta):
        def body(carry, _):
            theta, state, best, best_value = carry
            value, grad = value_and_grad(theta)
            better = value < best_value
            best = jnp.where(better, theta, best)
            best_value = jnp.where(better, value, best_value)
            updates, state = optimizer.update(grad, state, theta)
            return (optax.apply_updates(theta, updates), state, best, best_value), value

        start = (theta, optimizer.init(theta), theta, jnp.asarray(jnp.inf, theta.dtype))
        (last, _, best, best_value), history = jax.lax.scan(body, start, None, length=steps)
        final = objective(weights.matrix(last))
        return jnp.where(final < best_value, last, best), jnp.append(history, final)

    best, history = train(theta)
    history = np.asarray(history)
    return Learned(weights.topology(best, name), best, history, float(history[0]))
