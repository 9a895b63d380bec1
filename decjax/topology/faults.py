"""Unreliable networks: random link failures and node outages, realized per step inside jit.

:func:`with_faults` wraps a fixed graph in the :class:`~decjax.topology.kinds.Faulty`
kind (its neighbour lists and a :class:`FaultModel`). At step ``t`` every
undirected edge fails independently with probability ``p_t``, every node is down
with probability ``q`` (for blocks of ``down_steps`` steps), an edge survives
only if it did not fail and both ends are up, and the weights are re-derived on
the surviving graph so gossip stays symmetric and doubly stochastic.
Realizations are pure functions of ``(key, step)``: no state, no recompilation,
and they can be replayed on the host for analysis (:func:`realized_matrices`,
:func:`fault_statistics`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._random import run_key as run_key_context
from decjax._validation import as_key, check_choice, check_int
from decjax.topology.base import Topology, as_weights, weight_dtype
from decjax.topology.kinds import Sparse
from decjax.topology.kinds.faulty import REWEIGHT, FaultModel, Faulty
from decjax.topology.spectrum import DENSE_LIMIT, is_symmetric


def _probabilities(name: str, value) -> np.ndarray:
    """A finite real number or 1-D sequence of them, as float64 (strings, NaN refused)."""
    try:
        array = np.atleast_1d(np.asarray(value))
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers") from err
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name} must be a real number or numbers, got {value!r}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return array


def with_faults(
    topology: Topology,
    *,
    key,
    link_failure: float | Any = 0.0,
    node_failure: float = 0.0,
    down_steps: int = 1,
    reweight: str = "metropolis",
) -> Topology:
    """The same graph, with random link failures and node outages at every step.

    Args:
      topology: a symmetric (undirected) topology, static or time-varying.
      key: ``jax.random.key``; the failure pattern is a pure function of
        ``(key, step)``, so a run is reproducible and can be replayed.
      link_failure: probability that an edge drops at a step, in ``[0, 1]``;
        or a sequence of probabilities, one per step, cycled (a schedule).
      node_failure: probability that a worker is down (sends, receives and
        trains nothing), in ``[0, 1)``.
      down_steps: outages last blocks of this many steps (worker ``i`` is down
        for the whole block ``t // down_steps``), ``>= 1``.
      reweight: ``"metropolis"`` (Metropolis–Hastings on the surviving edges:
        reproduces every built-in undirected graph's weights when nothing fails)
        or ``"self"`` (keep the weights; a lost edge's weight stays with oneself:
        reproduces any symmetric ``W`` when nothing fails).

    Returns:
      A :class:`~decjax.topology.kinds.Faulty` topology over the graph's neighbour
      lists (a sparse base), whose ``matrix(step)`` is the realized matrix.

    Examples:
      >>> import jax, decjax
      >>> flaky = decjax.topology.with_faults(decjax.ring(8), key=jax.random.key(0),
      ...                                     link_failure=0.3)
      >>> flaky.matrix(5).shape
      (8, 8)
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if isinstance(topology, Faulty):
        raise ValueError(f"{topology.name} already has faults")
    if topology.batch_shape:
        raise ValueError("with_faults takes one topology, not a stack")
    link = _probabilities("link_failure", link_failure)
    if link.ndim != 1 or link.size == 0 or np.any((link < 0) | (link > 1)):
        raise ValueError(
            f"link_failure must be in [0, 1] (or a 1-D schedule of such), got {link_failure!r}"
        )
    node = _probabilities("node_failure", node_failure)
    if node.shape != (1,) or not 0 <= node[0] < 1:
        raise ValueError(f"node_failure must be a number in [0, 1), got {node_failure!r}")
    down_steps = check_int("down_steps", down_steps, minimum=1)
    check_choice("reweight", reweight, REWEIGHT)
    key = as_key("key", key)
    if not topology.has_fixed_matrices():
        raise ValueError(
            f"{topology.name} is already random at every step; faults apply to a fixed graph"
        )
    if not is_symmetric(topology):
        raise ValueError(
            f"link failures need a symmetric (undirected) topology; {topology.name} is directed"
        )
    nbr, w = (np.asarray(jax.device_get(a), np.float64) for a in topology.lists())
    model = FaultModel(
        key,
        as_weights(link),
        jnp.asarray(node[0], weight_dtype()),
        down_steps=down_steps,
        reweight=reweight,
    )
    base = Sparse(
        n=topology.n,
        period=topology.period,
        name=topology.name,
        neighbors=jnp.asarray(nbr, jnp.int32),
        weights=as_weights(w),
    )
    return Faulty(
        base=base, model=model, **{**base.common_fields(), "name": f"{topology.name}+faults"}
    )


def realized_matrices(topology: Topology, steps, *, run_key=None) -> np.ndarray:
    """The dense matrices realized at ``steps`` (host-side replay), shape ``(len(steps), n, n)``.

    Inside ``simulate`` and ``sweep`` the realizations also fold in the run's key
    (so seeds vary them); pass it as ``run_key`` (``simulate``'s ``key``, or
    ``jax.random.fold_in(key, seed)`` for a sweep's seed) to replay that run's
    matrices, or leave it ``None`` for the topology's own stream.

    Examples:
      >>> import jax, decjax
      >>> flaky = decjax.topology.with_faults(decjax.ring(6), key=jax.random.key(0),
      ...                                     link_failure=0.5)
      >>> decjax.topology.realized_matrices(flaky, range(3)).shape
      (3, 6, 6)
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    run_key = None if run_key is None else as_key("run_key", run_key)

    @jax.jit
    def matrix(topo, t, key):
        with run_key_context(key):
            return topo.matrix(t)

    return np.stack([np.asarray(matrix(topology, t, run_key), np.float64) for t in steps])


def fault_statistics(topology: Topology, steps) -> dict[str, float]:
    """Replay ``steps`` of a faulty topology: what was lost and what mixing remained.

    Returns ``{"fraction_links_lost", "fraction_nodes_down", "mean_degree",
    "effective_spectral_gap"}``; the effective gap is
    ``1 - sqrt(lambda_2(E[W_t^T W_t]))`` over the realized matrices (the
    per-step contraction of the consensus distance in expectation). It needs
    the dense realized matrices, so above ``spectrum.DENSE_LIMIT`` (2,048)
    workers it is not computed (``nan``); the counts are ``O(k n)`` per step.

    Examples:
      >>> import jax, decjax
      >>> flaky = decjax.topology.with_faults(decjax.ring(8), key=jax.random.key(0),
      ...                                     link_failure=0.3)
      >>> stats = decjax.topology.fault_statistics(flaky, range(200))
      >>> 0.2 < stats["fraction_links_lost"] < 0.4
      True
    """
    if not isinstance(topology, Faulty):
        raise ValueError("topology must be a Topology built by with_faults")
    steps = list(steps)
    if not steps:
        raise ValueError("steps must not be empty")

    @jax.jit
    def counts(topo, t):
        nbr, w = topo.lists()
        base = nbr[t % topo.period]
        rows = jnp.arange(topo.n)[:, None]
        exists = (w[t % topo.period] != 0) & (base != rows)
        alive = topo.model.edge_alive(base, w[t % topo.period], t)
        return exists.sum(), alive.sum(), topo.node_alive(t).mean()

    total = alive = up = 0.0
    for t in steps:
        e, a, u = counts(topology, t)
        total, alive, up = total + float(e), alive + float(a), up + float(u)
    gap = math.nan
    if topology.n <= DENSE_LIMIT:
        mats = realized_matrices(topology, steps)
        second = np.mean(np.einsum("tji,tjk->tik", mats, mats), axis=0)
        eig = np.sort(np.linalg.eigvalsh(second))[::-1]
        lam2 = eig[1] if len(eig) > 1 else 0.0
        gap = float(1.0 - np.sqrt(max(lam2, 0.0)))
    return {
        "fraction_links_lost": 1.0 - alive / max(total, 1.0),
        "fraction_nodes_down": 1.0 - up / len(steps),
        "mean_degree": alive / (len(steps) * topology.n),
        "effective_spectral_gap": gap,
    }


def node_alive(topology: Topology, step: Any) -> jax.Array:
    """``(n,)`` bool: which workers are up at ``step`` (all, without faults)."""
    return topology.node_alive(step)


__all__ = [
    "FaultModel",
    "Faulty",
    "fault_statistics",
    "node_alive",
    "realized_matrices",
    "with_faults",
]
