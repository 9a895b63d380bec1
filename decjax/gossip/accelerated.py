"""Accelerated (Chebyshev / heavy-ball) gossip, as in DeTAG (Lu & De Sa, 2021)."""

from __future__ import annotations

import math
from typing import Any

import jax

from decjax._validation import check_in_range, check_int
from decjax.gossip._mix import mix, resolve_backend
from decjax.topology import Topology, spectral_gap


def optimal_momentum(topology: Topology) -> float:
    r"""The accelerated-gossip momentum of Lu & De Sa for a static topology.

    .. math::  \eta_g = \frac{1 - \sqrt{1 - \lambda^2}}{1 + \sqrt{1 - \lambda^2}},
       \qquad \lambda = 1 - \text{spectral gap}

    Examples:
      >>> import decjax
      >>> round(decjax.gossip.optimal_momentum(decjax.complete(8)), 6)
      0.0
    """
    lam = 1.0 - spectral_gap(topology)
    root = math.sqrt(max(0.0, 1.0 - lam * lam))
    return (1.0 - root) / (1.0 + root)


def accelerated_step(
    topology: Topology, current: Any, previous: Any, step, momentum, *, backend=None
):
    r"""One round of accelerated gossip: :math:`z_{r+1} = (1+\eta_g) W z_r - \eta_g z_{r-1}`."""
    mixed = mix(topology, current, step, backend=backend)
    return jax.tree.map(lambda w, p: (1 + momentum) * w - momentum * p, mixed, previous)


def accelerated_mix(
    topology: Topology,
    tree: Any,
    step: Any = 0,
    *,
    rounds: int,
    momentum: float,
    backend: str | None = None,
) -> Any:
    r"""Accelerated gossip :math:`p_R(W)\,Z` (Algorithm 3 of Lu & De Sa, 2021).

    Starting from :math:`z_{-1} = z_0 = Z`, repeat ``rounds`` times

    .. math::  z_{r+1} = (1 + \eta_g)\, W_{t+r} z_r - \eta_g\, z_{r-1}.

    Every :math:`p_R` has columns summing to one, so the worker average is
    preserved; with :math:`\eta_g = 0` it is plain :math:`W^R`. With
    :func:`optimal_momentum` the error contracts like
    :math:`(1 - \sqrt{1-\lambda})^R` instead of :math:`\lambda^R` — for large
    ``R`` (for ``R`` below about :math:`1/\sqrt{1-\lambda}` it may not contract at all).

    Args:
      topology: the communication graph.
      tree: pytree of ``(n, ...)`` floating arrays.
      step: index of the first round (time-varying graphs).
      rounds: :math:`R \ge 1`.
      momentum: :math:`\eta_g \in [0, 1)`.
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> z = decjax.gossip.accelerated_mix(decjax.ring(8), jnp.arange(8.0), rounds=4, momentum=0.3)
      >>> round(float(z.mean()), 5)
      3.5

    References:
      Lu & De Sa. *Optimal Complexity in Decentralized Training*, ICML 2021
      (arXiv:2006.08085).
    """
    resolve_backend(topology, backend)
    rounds = check_int("rounds", rounds, minimum=1)
    check_in_range("momentum", momentum, 0.0, 1.0, closed="left")

    def body(r, carry):
        current, previous = carry
        nxt = accelerated_step(topology, current, previous, step + r, momentum, backend=backend)
        return nxt, current

    # Two rounds per loop iteration: each round then writes over the buffer of the
    # round before last (read only elementwise), and the loop needs no copies
    # (with one, XLA copies both carried buffers every round: 2x slower on CPU).
    current, _ = jax.lax.fori_loop(0, rounds, body, (tree, tree), unroll=min(2, rounds))
    return current
