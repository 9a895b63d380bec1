"""D² and exact diffusion: D-PSGD with a correction that removes the heterogeneity bias.

Both run the recursion :math:`X_{t+1} = V(2X_t - X_{t-1} - \\eta(G_t - G_{t-1}))`
(:math:`V = W` for D², :math:`V = (I + W)/2` for exact diffusion). Written
naively, that recursion integrates every rounding error of :math:`X` (its
worker average is a conserved "velocity"), and float32 runs drift away from
the optimum linearly in time. decjax runs the algebraically identical
primal-dual form

.. math::

   \\Psi_{t+1} = X_t - \\eta G_t, \\quad
   \\Delta = (V - I)(\\Psi_{t+1} + C_t), \\quad
   X_{t+1} = \\Psi_{t+1} + C_t + \\Delta, \\quad
   C_{t+1} = C_t + \\Delta,

with :math:`C_0 = 0` (so :math:`C_t = X_t - \\Psi_t`), where the only integrated
quantity :math:`C` has zero worker average and :math:`\\Delta` is computed as a
sum of neighbour differences (:func:`decjax.gossip.mix_delta`), so rounding
stays at the level of the disagreement between workers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from decjax._validation import is_traced
from decjax.algorithms._common import (
    Gossip,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    zeros_count,
)
from decjax.topology import Topology, lazy
from decjax.topology.spectrum import circulant_eigenvalues, is_symmetric


class DiffusionState(NamedTuple):
    """State of :func:`d2` and :func:`exact_diffusion`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    correction: Any  # C_t = X_t - Psi_t, zero worker average


def _corrected_diffusion(learning_rate, gossip: Gossip):
    check_learning_rate(learning_rate)

    def init(params):
        return DiffusionState(zeros_count(), optax.tree.zeros_like(params))

    def step(grads, state, params, **extra_args):
        del extra_args
        t = state.count
        psi = optax.tree.add_scale(params, -learning_rate_at(learning_rate, t), grads)
        target = optax.tree.add(psi, state.correction)
        delta = gossip.delta(target, t)
        new = optax.tree.add(target, delta)
        correction = optax.tree.add(state.correction, delta)
        return new, DiffusionState(t + 1, correction), gossip.traffic(psi, t)

    return from_step(init, step)


def check_d2_topology(topology: Topology) -> None:
    """D² needs every ``W_t`` symmetric with smallest eigenvalue ``> -1/3``."""
    if is_traced(topology.weights):
        return  # traced (e.g. swept) topology: validate the concrete ones before stacking
    if not is_symmetric(topology):
        raise ValueError(f"d2 needs a symmetric mixing matrix; {topology.name} is not")
    lam = circulant_eigenvalues(topology)  # O(k n) for rings and exponential graphs
    lowest: Any
    if lam is not None:
        lowest = lam.real.min(axis=1)
    else:
        lowest = [np.linalg.eigvalsh(w).min() for w in topology.numpy_matrices()]  # concrete
    for t, lam_min in enumerate(lowest):
        where = f" (step {t})" if len(lowest) > 1 else ""
        lam_min = float(lam_min)
        if lam_min <= -1.0 / 3.0 + 1e-6:
            raise ValueError(
                f"d2 needs lambda_min(W) > -1/3, but {topology.name}{where} has "
                f"lambda_min = {lam_min:.4f}; use a lazier matrix, e.g. "
                "decjax.topology.lazy(topology, 0.5)"
            )


@constructor
def d2(
    learning_rate: Any,
    topology: Topology,
    *,
    rounds: int = 1,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""D² (Tang et al., 2018): D-PSGD corrected by the previous iterate and gradient.

    .. math::

       X_1 = W (X_0 - \eta G_0), \qquad
       X_{t+1} = W \big(2 X_t - X_{t-1} - \eta (G_t - G_{t-1})\big)

    (computed in the drift-free primal-dual form of :mod:`decjax.algorithms.diffusion`;
    with a schedule, :math:`\eta(G_t - G_{t-1})` becomes
    :math:`\eta_t G_t - \eta_{t-1} G_{t-1}`). It removes D-PSGD's heterogeneity
    bias: with full gradients and a constant step it converges to the exact
    minimizer. **Condition:** every :math:`W` symmetric with
    :math:`\lambda_{\min}(W) > -1/3`, checked at construction. Rings of even
    size sit exactly at :math:`-1/3`; use :func:`decjax.topology.lazy`.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.d2(0.1, decjax.topology.lazy(decjax.ring(4), 0.5))
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [0.5667, 0.9, 1.9, 2.2333]

    References:
      Tang, Lian, Yan, Zhang, Liu. *D²: Decentralized Training over Decentralized
      Data*, ICML 2018 (arXiv:1803.07068).
    """
    gossip = Gossip(topology, rounds=rounds, backend=backend, needs="doubly")
    check_d2_topology(topology)
    return _corrected_diffusion(learning_rate, gossip)


@constructor
def exact_diffusion(
    learning_rate: Any,
    topology: Topology,
    *,
    rounds: int = 1,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Exact diffusion (Yuan, Ying, Zhao, Sayed, 2019): adapt, correct, combine.

    With :math:`\bar W = (I + W)/2` and :math:`\Psi_0 = X_0`:

    .. math::

       \Psi_{t+1} = X_t - \eta G_t, \qquad
       \Phi_{t+1} = \Psi_{t+1} + X_t - \Psi_t, \qquad
       X_{t+1} = \bar W \Phi_{t+1}.

    Converges to the exact minimizer with a constant step for symmetric doubly
    stochastic :math:`W` (any spectrum: :math:`\bar W` has non-negative
    eigenvalues), where ATC D-PSGD has an :math:`O(\eta)` bias. It is D² run on
    :math:`\bar W` (:func:`decjax.topology.lazy` with :math:`\kappa = 1/2`).

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.exact_diffusion(0.1, decjax.ring(4))  # = D² on (I + W) / 2
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [0.5667, 0.9, 1.9, 2.2333]

    References:
      Yuan, Ying, Zhao, Sayed. *Exact Diffusion for Distributed Optimization and
      Learning — Part I: Algorithm Development*, IEEE Trans. Signal Process. 2019
      (arXiv:1702.05122).
    """
    gossip = Gossip(lazy(topology, 0.5), rounds=rounds, backend=backend, needs="doubly")
    return _corrected_diffusion(learning_rate, gossip)
