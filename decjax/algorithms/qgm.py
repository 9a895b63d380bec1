"""QG-DSGDm: decentralized SGD with quasi-global momentum."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax._validation import check_bool, check_in_range
from decjax.algorithms._common import (
    Gossip,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    zeros_count,
)
from decjax.topology import Topology


class QuasiGlobalMomentumState(NamedTuple):
    """State of :func:`qg_dsgdm`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    momentum: Any  # M-hat: the quasi-global momentum buffer


@constructor
def qg_dsgdm(
    learning_rate: Any,
    topology: Topology,
    *,
    momentum: float = 0.9,
    buffer_decay: float | None = None,
    nesterov: bool = False,
    rounds: int = 1,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Quasi-global momentum (Lin, Karimireddy, Stich & Jaggi, 2021).

    The momentum buffer tracks the *global* model displacement instead of the
    local gradient, which makes momentum robust to heterogeneous data:

    .. math::

       \tilde M = \beta \hat M + G, \qquad
       X_{1/2} = X - \eta \tilde M \quad (\text{Nesterov: } X - \eta (G + \beta \tilde M)),

       X^+ = W X_{1/2}, \qquad D = (X - X^+)/\eta, \qquad
       \hat M \leftarrow \mu \hat M + (1 - \mu) D

    (a step with :math:`\eta = 0`, e.g. the first of a warm-up from 0, leaves
    :math:`\hat M` as it was: :math:`D` is undefined there).

    Args:
      learning_rate: :math:`\eta > 0` or a schedule.
      topology: the communication graph.
      momentum: :math:`\beta \in [0, 1)`.
      buffer_decay: :math:`\mu \in [0, 1)`; defaults to :math:`\beta` as in the paper.
      nesterov: use the Nesterov variant (QG-DSGDm-N).
      rounds: gossip rounds per step.
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.qg_dsgdm(0.1, decjax.ring(4), momentum=0.9)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [1.2333, 0.9, 1.9, 1.5667]

    References:
      Lin, Karimireddy, Stich, Jaggi. *Quasi-Global Momentum: Accelerating
      Decentralized Deep Learning on Heterogeneous Data*, ICML 2021 (arXiv:2102.04761).
    """
    check_learning_rate(learning_rate)
    check_in_range("momentum", momentum, 0.0, 1.0, closed="left")
    mu = momentum if buffer_decay is None else buffer_decay
    check_in_range("buffer_decay", mu, 0.0, 1.0, closed="left")
    check_bool("nesterov", nesterov)
    gossip = Gossip(topology, rounds=rounds, backend=backend)

    def init(params):
        return QuasiGlobalMomentumState(zeros_count(), optax.tree.zeros_like(params))

    def step(grads, state, params, **extra_args):
        del extra_args
        t = state.count
        eta = learning_rate_at(learning_rate, t)
        local = optax.tree.add_scale(grads, momentum, state.momentum)
        if nesterov:
            local = optax.tree.add_scale(grads, momentum, local)
        new = gossip(optax.tree.add_scale(params, -eta, local), t)
        # a step of size 0 (a warm-up from 0) moves nothing to learn from: the buffer stays
        # (dividing by it would fill the buffer with NaN, silently, from the first step on)
        moved = eta != 0
        safe = jnp.where(moved, eta, 1.0)
        buffer = jax.tree.map(
            lambda m, x, y: jnp.where(moved, mu * m + (1 - mu) * (x - y) / safe, m),
            state.momentum,
            params,
            new,
        )
        return new, QuasiGlobalMomentumState(t + 1, buffer), gossip.traffic(params, t)

    return from_step(init, step)
