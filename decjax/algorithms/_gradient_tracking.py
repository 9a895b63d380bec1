"""Gradient tracking (DSGT / GT-DSGD)."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import optax

from decjax._validation import check_choice
from decjax.algorithms._common import (
    Gossip,
    also_sent,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    zeros_count,
)
from decjax.topology import Topology


class GradientTrackingState(NamedTuple):
    """State of :func:`gradient_tracking`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    tracker: Any  # Y_{t-1}, stacked (n, ...)
    prev_grads: Any  # G_{t-1}, stacked (n, ...)


@constructor
def gradient_tracking(
    learning_rate: Any,
    topology: Topology,
    *,
    order: str = "atc",
    rounds: int = 1,
    backend: str | None = None,
    form: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Gradient tracking: every worker follows a tracker of the network-average gradient.

    With :math:`Y_0 = G_0`:

    .. math::

       \text{``parallel''}:\quad X_{t+1} = W X_t - \eta Y_t, \qquad
       Y_{t+1} = W Y_t + G_{t+1} - G_t

       \text{``atc''}:\quad X_{t+1} = W (X_t - \eta Y_t), \qquad
       Y_{t+1} = W (Y_t + G_{t+1} - G_t)

    Invariant (doubly stochastic :math:`W`): :math:`\bar Y_t = \bar G_t` at every
    step. With full gradients and a constant small step it converges to the
    exact minimizer of :math:`\frac1n\sum_i f_i` at every worker, where D-PSGD
    keeps an :math:`O(\eta)` bias. Each step gossips two vectors (params and tracker).

    Args:
      learning_rate: :math:`\eta > 0` or an optax schedule of the step count.
      topology: the communication graph.
      order: ``"atc"`` (adapt then combine) or ``"parallel"``, as in
        :func:`decjax.dpsgd` and :func:`decjax.combine`.
      rounds: gossip rounds per step (``W`` becomes :math:`W^k`).
      backend: force a gossip backend.
      form: deprecated name of ``order`` (a ``DeprecationWarning``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` over stacked params.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> tx = decjax.gradient_tracking(0.1, decjax.ring(4))
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])
      >>> new, state, info = tx.step(jnp.ones_like(x), tx.init(x), x)  # one step, Y_0 = G_0
      >>> [round(v, 4) for v in new[:, 0].tolist()]  # W (x - 0.1 * 1): ring weights 1/3
      [1.2333, 0.9, 1.9, 1.5667]
      >>> float(info["bytes_sent"])  # the params to 2 neighbours (no tracker at step 0)
      8.0

    References:
      Nedić, Olshevsky, Shi. *Achieving geometric convergence for distributed
      optimization over time-varying graphs*, SIAM J. Optim. 2017. Pu & Nedić.
      *Distributed stochastic gradient tracking methods*, Math. Program. 2021.
      Koloskova, Lin, Stich. *An improved analysis of gradient tracking for
      decentralized machine learning*, NeurIPS 2021.
    """
    check_learning_rate(learning_rate)
    order = _order(order, form)
    gossip = Gossip(topology, rounds=rounds, backend=backend, needs="doubly")

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return GradientTrackingState(zeros_count(), zeros, zeros)

    def step(grads, state, params, **extra_args):
        del extra_args
        t = state.count

        tracker = _tracker(gossip, order, state, grads)
        eta = learning_rate_at(learning_rate, t)
        if order == "atc":
            new = gossip(optax.tree.add_scale(params, -eta, tracker), t)
        else:
            new = optax.tree.add_scale(gossip(params, t), -eta, tracker)
        # the tracker goes in the same rounds as the params, from step 1 on
        info = also_sent(gossip.traffic(params, t), gossip.traffic(tracker, t - 1), t > 0)
        return new, GradientTrackingState(t + 1, tracker, grads), info

    return from_step(init, step)


def _order(order: str, form: str | None) -> str:
    """``order``, or the deprecated ``form`` with a ``DeprecationWarning``."""
    if form is not None:
        warnings.warn(
            "gradient_tracking(form=...) is deprecated: pass order=... (the name dpsgd and "
            "combine use)",
            DeprecationWarning,
            stacklevel=3,
        )
        order = form
    check_choice("order", order, ("atc", "parallel"))
    return order


def _tracker(gossip: Gossip, order: str, state: GradientTrackingState, grads) -> Any:
    """``Y_t``: ``G_0`` at the first step, then ``W (Y + G - G_prev)`` (atc) or
    ``W Y + G - G_prev`` (parallel), gossiped at round ``t - 1``."""
    t = state.count
    innovation = optax.tree.sub(grads, state.prev_grads)
    if order == "atc":
        tracked = gossip(optax.tree.add(state.tracker, innovation), t - 1)
    else:
        tracked = optax.tree.add(gossip(state.tracker, t - 1), innovation)
    # y_0 = g_0. A select, not lax.cond: the tracked value is computed every step
    # anyway, and a cond's output buffer cost copies of the tracker and params.
    return jax.tree.map(lambda g, y: jax.numpy.where(t == 0, g, y), grads, tracked)
