"""Stragglers and node churn, as wrappers around any decentralized transformation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax import _axis
from decjax._random import varied
from decjax._validation import as_key, check_choice
from decjax.algorithms._common import apply_step, constructor, from_step
from decjax.topology import Faulty, Topology
from decjax.topology.faults import node_alive

PROFILES = ("random", "fixed")


def check_speeds(speeds) -> jax.Array:
    """Per-worker compute rates in ``(0, 1]`` as a float32 array."""
    array = np.asarray(speeds, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"speeds must be a 1-D array of per-worker rates, got shape {array.shape}")
    if np.any((array <= 0) | (array > 1)) or not np.all(np.isfinite(array)):
        raise ValueError(f"speeds must be in (0, 1], got min {array.min()}, max {array.max()}")
    return jnp.asarray(array, jnp.float32)


def active_workers(speeds: jax.Array, key: jax.Array, step, profile: str) -> jax.Array:
    """``(n,)`` bool: which workers finish a gradient at ``step``.

    ``"random"``: worker ``i`` is active with probability ``speeds[i]``,
    independently per step. ``"fixed"``: deterministic rate, active when
    ``floor((t + 1) s_i) > floor(t s_i)`` (a worker of speed 1/3 every third step).
    """
    if profile == "random":  # varied by the run's key inside a run (decjax._random)
        return jax.random.uniform(jax.random.fold_in(varied(key), step), speeds.shape) < speeds
    t = jnp.asarray(step, jnp.float32)
    return jnp.floor((t + 1) * speeds) > jnp.floor(t * speeds)


def where_workers(mask, a, b):
    """Per worker (axis 0), take ``a`` where ``mask`` else ``b``, over whole trees."""

    def pick(x, y):
        return jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)


class StragglerState(NamedTuple):
    """State of :func:`stragglers`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    last_grads: Any  # each worker's most recent finished gradient
    inner: Any


@constructor
def stragglers(
    tx: optax.GradientTransformation,
    speeds,
    *,
    key: jax.Array,
    profile: str = "random",
    mode: str = "stale",
) -> optax.GradientTransformationExtraArgs:
    """Heterogeneous compute speeds: a worker finishes a fresh gradient only on some steps.

    Nobody waits for stragglers. At a step where worker ``i`` is not active,
    the wrapped algorithm receives, for ``i``:

    * ``mode="stale"``: its most recent finished gradient (what a real system
      would still have in its send buffer) — meaningful for every algorithm;
    * ``mode="zero"``: a zero gradient (no local progress; it still gossips).

    Args:
      tx: any decentralized transformation (``dpsgd``, ``gradient_tracking``...).
      speeds: ``(n,)`` per-worker rates in ``(0, 1]`` (1 = never straggles).
      key: ``jax.random.key`` for the ``"random"`` profile.
      profile: ``"random"`` (Bernoulli per step) or ``"fixed"`` (deterministic rate).
      mode: ``"stale"`` or ``"zero"``.

    Examples:
      >>> import jax, decjax
      >>> tx = decjax.algorithms.stragglers(decjax.dpsgd(0.1, decjax.ring(4)),
      ...                                   [1.0, 1.0, 0.5, 0.25], key=jax.random.key(0))
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    speeds = check_speeds(speeds)
    check_choice("profile", profile, PROFILES)
    check_choice("mode", mode, ("stale", "zero"))
    key = as_key("key", key)
    inner_tx, tx = tx, optax.with_extra_args_support(tx)

    def init(params):
        n = _axis.total_workers(jax.tree.leaves(params)[0].shape[0])
        if n != speeds.shape[0]:
            raise ValueError(f"speeds has {speeds.shape[0]} entries but params have n={n}")
        zeros = optax.tree.zeros_like(params)
        return StragglerState(jnp.zeros((), jnp.int32), zeros, tx.init(params))

    def fed_gradients(grads, state):
        active = _axis.local_rows(active_workers(speeds, key, state.count, profile))
        fallback = state.last_grads if mode == "stale" else optax.tree.zeros_like(grads)
        return where_workers(active, grads, fallback), where_workers(
            active, grads, state.last_grads
        )

    def step(grads, state, params, **extra_args):
        fed, last = fed_gradients(grads, state)
        new, inner, info = apply_step(inner_tx, fed, state.inner, params, **extra_args)
        return new, StragglerState(state.count + 1, last, inner), info

    # one path: ``update`` is derived from the wrapped algorithm's ``step`` and its record
    return from_step(init, step)


class ChurnState(NamedTuple):
    """State of :func:`node_churn`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    inner: Any


@constructor
def node_churn(
    tx: optax.GradientTransformation,
    topology: Topology,
    *,
    restart: str = "average",
) -> optax.GradientTransformationExtraArgs:
    """Workers leave and rejoin, following the node outages of a faulty topology.

    ``topology`` is the one built by :func:`decjax.topology.with_faults` (with
    ``node_failure > 0``) that ``tx`` gossips on, so a departed worker's links
    are already gone. This wrapper also freezes a departed worker: its gradient
    is zeroed and its parameters do not move. When it rejoins, its parameters are

    * ``restart="average"``: the average of its neighbours that are up, or
    * ``restart="stale"``: the copy it left with.

    Examples:
      >>> import jax, decjax
      >>> flaky = decjax.topology.with_faults(decjax.ring(8), key=jax.random.key(0),
      ...                                     node_failure=0.1, down_steps=20)
      >>> tx = decjax.algorithms.node_churn(decjax.dpsgd(0.1, flaky), flaky)
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    if not isinstance(topology, Faulty):
        raise ValueError("topology must be built by decjax.topology.with_faults(...)")
    check_choice("restart", restart, ("average", "stale"))
    inner_tx, tx = tx, optax.with_extra_args_support(tx)

    def init(params):
        return ChurnState(jnp.zeros((), jnp.int32), tx.init(params))

    def who(t):
        """All workers up now, and this device's rows: up now, and rejoining now."""
        alive_all = node_alive(topology, t)
        was_all = jnp.where(t > 0, node_alive(topology, t - 1), alive_all)
        alive, was_alive = _axis.local_rows(alive_all), _axis.local_rows(was_all)
        return alive_all, alive, alive & ~was_alive

    def step(grads, state, params, **extra_args):
        t = state.count
        alive_all, alive, rejoin = who(t)
        grads = where_workers(alive, grads, optax.tree.zeros_like(grads))
        new, inner, info = apply_step(inner_tx, grads, state.inner, params, **extra_args)
        new = where_workers(alive, new, params)  # a departed worker does not move
        if restart == "average":
            new = where_workers(rejoin, _neighbour_average(topology, params, alive_all, t), new)
        return new, ChurnState(t + 1, inner), info

    # one path: ``update`` is derived from the wrapped algorithm's ``step`` and its record
    return from_step(init, step)


def _neighbour_average(topology: Topology, params, alive, step):
    """Each worker's mean of its neighbours that are ``alive`` (itself if it has none)."""
    nbr, w = topology.lists()
    nbr, w = nbr[step % topology.period], w[step % topology.period]
    rows = jnp.arange(topology.n)[:, None]
    use = _axis.local_rows((w != 0) & (nbr != rows) & alive[nbr])
    nbr = _axis.local_rows(nbr)
    count = use.sum(axis=1)

    def average(x):
        weights = use.astype(x.dtype) / jnp.maximum(count, 1)[:, None].astype(x.dtype)
        gathered = jnp.take(_axis.gather_rows(x), nbr, axis=0)  # (n, k, ...)
        expand = weights.reshape(weights.shape + (1,) * (x.ndim - 1))
        mean = jnp.sum(expand * gathered, axis=1)
        return jnp.where((count > 0).reshape((-1,) + (1,) * (x.ndim - 1)), mean, x)

    return jax.tree.map(average, params)
