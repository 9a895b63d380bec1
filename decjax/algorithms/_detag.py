"""DeTAG: gradient tracking with accelerated gossip and phase-accumulated gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax._validation import check_in_range, check_int, is_traced
from decjax.algorithms._common import (
    Gossip,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    zeros_count,
)
from decjax.gossip import accelerated_step, optimal_momentum
from decjax.topology import Topology


class DeTAGState(NamedTuple):
    """State of :func:`detag`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    model_mix: Any  # z_r: accelerated-gossip iterate of the params
    model_mix_prev: Any  # z_{r-1}
    tracker_mix: Any  # accelerated-gossip iterate of the tracker Y
    tracker_mix_prev: Any
    grad_sum: Any  # running mean of this phase's gradients, G-bar_k so far
    prev_grad: Any  # G-bar_{k-1}


@constructor
def detag(
    learning_rate: Any,
    topology: Topology,
    *,
    phase_length: int = 1,
    gossip_momentum: float | str = "optimal",
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""DeTAG (Lu & De Sa, 2021): decentralized gradient tracking with accelerated gossip.

    Iterations are grouped in phases of :math:`R` (``phase_length``). During
    phase :math:`k` the params :math:`X_k` stay fixed: every iteration adds a
    minibatch gradient at :math:`X_k` to :math:`\bar G_k` (the phase mean) and
    advances one round of accelerated gossip (:func:`decjax.gossip.accelerated_mix`)
    on both the params and the tracker. At the end of the phase

    .. math::

       X_{k+1} = p_R(W)\,(X_k - \alpha_k Y_k), \qquad
       Y_{k+1} = p_R(W)\,Y_k + \bar G_k - \bar G_{k-1},

    with :math:`Y_0 = 0`, :math:`\bar G_{-1} = 0` and
    :math:`p_R(W)` the accelerated gossip polynomial
    (:math:`z_{r+1} = (1+\eta_g) W z_r - \eta_g z_{r-1}`, :math:`z_{-1} = z_0`).
    Gossip and gradient computation overlap, so the tracker used at the end of
    phase :math:`k` holds gradients up to :math:`\bar G_{k-1}`: a one-phase
    gradient delay, as in the paper. Invariant: :math:`\bar Y_{k+1} = \bar G_k`.
    With :math:`R = 1, \eta_g = 0` this is ATC gradient tracking with a
    one-step-stale gradient. Each iteration gossips two vectors.

    Args:
      learning_rate: :math:`\alpha > 0` or a schedule of the phase index :math:`k`.
      topology: the communication graph.
      phase_length: :math:`R \ge 1` (the paper's experiments use 1 or 2).
      gossip_momentum: :math:`\eta_g \in [0, 1)`, or ``"optimal"`` for
        :func:`decjax.gossip.optimal_momentum` of a static topology (the paper's
        experiments tune it in {0, 0.1, 0.2, 0.4}).
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.detag(0.1, decjax.ring(4), phase_length=1, gossip_momentum=0.0)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [1.3333, 1.0, 2.0, 1.6667]

    References:
      Lu & De Sa. *Optimal Complexity in Decentralized Training*, ICML 2021
      (arXiv:2006.08085), Algorithms 2 and 3.
    """
    check_learning_rate(learning_rate)
    phase = check_int("phase_length", phase_length, minimum=1)
    gossip = Gossip(topology, backend=backend, needs="doubly")
    eta_g = _gossip_momentum(gossip_momentum, topology)

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return DeTAGState(zeros_count(), params, params, zeros, zeros, zeros, zeros)

    def step(grads, state, params, **extra_args):
        del extra_args
        t = state.count

        def advance(current, previous):
            return accelerated_step(topology, current, previous, t, eta_g, backend=gossip.backend)

        z = advance(state.model_mix, state.model_mix_prev)
        y = advance(state.tracker_mix, state.tracker_mix_prev)
        grad_sum = optax.tree.add_scale(state.grad_sum, 1.0 / phase, grads)
        end = (t % phase) == phase - 1
        alpha = learning_rate_at(learning_rate, t // phase)
        x_next = optax.tree.add_scale(z, -alpha, y)
        y_next = jax.tree.map(lambda a, b, c: a + b - c, y, grad_sum, state.prev_grad)

        new_state = _next_state(state, end, (x_next, z), (y_next, y), grad_sum)
        new = jax.tree.map(lambda a, b: jnp.where(end, a, b), x_next, params)
        return new, new_state, gossip.traffic(params, t, vectors=2)

    return from_step(init, step)


def _gossip_momentum(gossip_momentum, topology: Topology) -> float:
    """The accelerated-gossip momentum: a float in ``[0, 1)``, or ``"optimal"`` for the topology."""
    if gossip_momentum == "optimal":
        if topology.is_time_varying or is_traced(topology.weights):
            raise ValueError(
                "gossip_momentum='optimal' needs a static, concrete topology; pass a float"
            )
        return optimal_momentum(topology)
    if isinstance(gossip_momentum, str):
        raise ValueError(f"gossip_momentum must be a float or 'optimal', got {gossip_momentum!r}")
    check_in_range("gossip_momentum", gossip_momentum, 0.0, 1.0, closed="left")
    return gossip_momentum


def _next_state(state: DeTAGState, end, models, trackers, grad_sum) -> DeTAGState:
    """The state after a round: at a phase's ``end`` the accelerated gossip restarts from the
    new iterates ``(x_next, y_next)`` and the phase's gradient sum moves to ``prev_grad``;
    within a phase the gossip iterates ``(z, y)`` advance and the sum grows."""
    (x_next, z), (y_next, y) = models, trackers

    def pick(at_end, within):
        return jax.tree.map(lambda a, b: jnp.where(end, a, b), at_end, within)

    return DeTAGState(
        state.count + 1,
        pick(x_next, z),
        pick(x_next, state.model_mix),
        pick(y_next, y),
        pick(y_next, state.tracker_mix),
        pick(optax.tree.zeros_like(grad_sum), grad_sum),
        pick(grad_sum, state.prev_grad),
    )
