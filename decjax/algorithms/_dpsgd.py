"""D-PSGD and decentralized momentum SGD (DmSGD)."""

from __future__ import annotations

from typing import Any

import optax

from decjax._validation import check_bool, check_in_range, check_positive
from decjax.algorithms._combine import decentralize
from decjax.algorithms._common import constructor
from decjax.byzantine import Robust
from decjax.topology import Topology


@constructor
def dpsgd(
    learning_rate: Any,
    topology: Topology,
    *,
    momentum: Any = 0.0,
    nesterov: bool = False,
    order: str = "atc",
    rounds: int = 1,
    backend: str | None = None,
    robust: Robust | None = None,
    gossip_momentum: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    r"""Decentralized parallel SGD (D-PSGD), with optional local momentum (DmSGD).

    With stochastic gradients :math:`G` stacked over workers and local heavy-ball
    momentum :math:`M^+ = \beta M + G` (:math:`M = G` when ``momentum=0``):

    .. math::

       X^+ = W_t\,(X - \eta M^+) \quad \text{(``order="atc"``)}, \qquad
       X^+ = W_t X - \eta M^+ \quad \text{(``order="parallel"``, Lian et al. 2017)}.

    The momentum buffer is local (never communicated), as in DmSGD. This is
    ``decentralize(optax.sgd(learning_rate, momentum, nesterov), topology)``.

    Args:
      learning_rate: step size :math:`\eta > 0`, or an optax schedule.
      topology: the communication graph.
      momentum: :math:`\beta \in [0, 1)`; 0 disables momentum.
      nesterov: use Nesterov momentum.
      order: ``"atc"`` (adapt-then-combine) or ``"parallel"``.
      rounds: gossip rounds per step.
      backend: force a gossip backend (see :func:`decjax.mix`).
      robust: a :class:`decjax.byzantine.Robust` (Byzantine workers and a robust rule in
        place of the linear combine; see :mod:`decjax.byzantine`).
      gossip_momentum: :math:`\\eta_g \\in [0, 1)`: the ``rounds`` are accelerated
        (Chebyshev / heavy-ball) gossip, as Muffliato's averaging uses
        (:func:`decjax.gossip.accelerated_mix`); 0 is plain gossip.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` over stacked ``(n, ...)`` params.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, decjax
      >>> tx = decjax.dpsgd(0.1, decjax.ring(4))
      >>> x = jnp.arange(4.0)[:, None]
      >>> state = tx.init(x)
      >>> updates, state = tx.update(jnp.ones_like(x), state, x)
      >>> [round(v, 4) for v in optax.apply_updates(x, updates).ravel().tolist()]  # W (x - 0.1)
      [1.2333, 0.9, 1.9, 1.5667]

    References:
      Lian, Zhang, Zhang, Hsieh, Zhang, Liu. *Can Decentralized Algorithms
      Outperform Centralized Algorithms?* NeurIPS 2017 (arXiv:1705.09056).
      Yu, Jin, Yang. *On the Linear Speedup Analysis of Communication Efficient
      Momentum SGD for Distributed Non-Convex Optimization*, ICML 2019.
    """
    local = local_sgd_optimizer(learning_rate, momentum, nesterov)
    return decentralize(
        local,
        topology,
        order=order,
        rounds=rounds,
        backend=backend,
        robust=robust,
        gossip_momentum=gossip_momentum,
    )


def local_sgd_optimizer(learning_rate, momentum, nesterov) -> optax.GradientTransformation:
    """``optax.sgd`` with validated arguments (momentum 0 means none)."""
    check_positive("learning_rate", learning_rate)
    check_in_range("momentum", momentum, 0.0, 1.0, closed="left")
    check_bool("nesterov", nesterov)
    if nesterov and isinstance(momentum, int | float) and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    use_momentum = momentum if not isinstance(momentum, int | float) or momentum > 0 else None
    return optax.sgd(learning_rate, momentum=use_momentum, nesterov=nesterov)
