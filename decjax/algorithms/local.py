"""Local SGD (periodic exact averaging) and Gossip-PGA (gossip plus periodic averaging)."""

from __future__ import annotations

from typing import Any

import optax

from decjax._validation import check_int
from decjax.algorithms._combine import decentralize
from decjax.algorithms._common import constructor
from decjax.algorithms._dpsgd import local_sgd_optimizer
from decjax.topology import Topology, solo


@constructor
def gossip_pga(
    learning_rate: Any,
    topology: Topology,
    *,
    every: int,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Gossip-PGA (Chen et al., 2021): gossip every step, exact global averaging every ``H``.

    .. math::

       X_{t+1} = \begin{cases}
         \tfrac1n \mathbf 1 \mathbf 1^\top (X_t - \eta M_{t+1}) & (t+1) \bmod H = 0\\
         W_t (X_t - \eta M_{t+1}) & \text{otherwise}
       \end{cases}

    with local (never communicated) momentum :math:`M` as in :func:`dpsgd`.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.gossip_pga(0.1, decjax.ring(4), every=2)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> state = tx.init(x)
      >>> for step in range(2):  # unit gradients; the second step averages
      ...     updates, state = tx.update(jnp.ones_like(x), state, x)
      ...     x = optax.apply_updates(x, updates)
      ...     print([round(v, 4) for v in x[:, 0].tolist()])
      [1.2333, 0.9, 1.9, 1.5667]
      [1.3, 1.3, 1.3, 1.3]

    References:
      Chen, Yuan, Zhang, Pan, Xu, Yin. *Accelerating Gossip SGD with Periodic
      Global Averaging*, ICML 2021 (arXiv:2105.09080).
    """
    every = check_int("every", every, minimum=1)
    local = local_sgd_optimizer(learning_rate, momentum, nesterov)
    return decentralize(local, topology, average_every=every)


@constructor
def local_sgd(
    learning_rate: Any,
    n: int,
    *,
    every: int,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Local SGD / periodic model averaging: ``H`` local steps, then an exact average.

    :func:`gossip_pga` on ``solo(n)``: between averages the workers do not
    communicate, each taking :math:`x_i \leftarrow x_i - \eta m_i` with its own
    momentum :math:`m_i`; every ``H``-th step all models are replaced by their
    average (counted as a ring all-reduce). With ``every=1`` it is exactly
    centralized (mini-batch) SGD on the averaged gradient.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> tx = decjax.local_sgd(0.1, 4, every=2)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> x, state, info = tx.step(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in x[:, 0].tolist()], float(info["bytes_sent"])  # local only
      ([-0.1, 0.9, 1.9, 2.9], 0.0)
      >>> x, state, info = tx.step(jnp.ones_like(x), state, x)  # the second step averages
      >>> [round(v, 4) for v in x[:, 0].tolist()], float(info["bytes_sent"])  # 2 (n-1)/n x 4
      ([1.3, 1.3, 1.3, 1.3], 6.0)

    References:
      Stich. *Local SGD Converges Fast and Communicates Little*, ICLR 2019
      (arXiv:1805.09767).
    """
    n = check_int("n", n, minimum=1)
    return gossip_pga(learning_rate, solo(n), every=every, momentum=momentum, nesterov=nesterov)
