"""RelaySGD: local steps, then the RelaySum average over a spanning tree (Vogels et al., 2021)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax.algorithms._combine import per_worker
from decjax.algorithms._common import (
    DecentralizedTransformation,
    constructor,
    from_step,
    local_then,
    zeros_count,
)
from decjax.algorithms._dpsgd import local_sgd_optimizer
from decjax.gossip.relay import RelayState, relay_init, relay_round, relay_routes, relay_traffic
from decjax.topology import Topology


class RelaySumState(NamedTuple):
    """State of :func:`relaysum`: the step, the reference point that stands in for the
    workers not yet heard from, and the relay's inboxes."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    reference: Any  # the workers' mean initial params, one copy per worker
    relay: RelayState


@constructor
def relaysum(topology: Topology) -> DecentralizedTransformation:
    r"""Combine local updates by RelaySum over a spanning tree (RelaySGD's communication).

    With :math:`x_i^{(t+1/2)} = x_i^{(t)} + u_i` (the local update), every worker relays
    :math:`x^{(t+1/2)} - x^{(0)}` (see :mod:`decjax.gossip.relay`) and sets

    .. math::

       x_i^{(t+1)} = x^{(0)} + \frac1n \sum_{k:\, d(i,k) \le t+1}
       \big(x_k^{(t+1-d(i,k))+1/2} - x^{(0)}\big),

    the authors' update :math:`\frac1n\big(x_i^{(t+1/2)} + \sum_j m_{j\to i}^{(t)} +
    (n - c_i^{(t)})\, x^{(0)}\big)`: the workers not yet heard from count as the initial
    point :math:`x^{(0)}` (here the workers' mean initial params, which is :math:`x^{(0)}`
    when they start together, as RelaySGD assumes). Every worker's update reaches every
    other exactly once, weighted :math:`1/n`, after a delay equal to their tree distance:
    the average moves exactly like all-reduce SGD's with delayed updates, whatever the
    heterogeneity :math:`\zeta^2`. Each step sends one message per tree edge and
    direction (:math:`2(n-1)` on a tree, fewer than a ring's :math:`2n`) with a 4-byte
    count. A topology of period ``T`` (:func:`~decjax.topology.double_binary_trees`)
    relays coordinate ``c`` over tree ``c mod T``.

    Args:
      topology: a spanning tree (:func:`~decjax.topology.chain`,
        :func:`~decjax.topology.binary_tree`, :func:`~decjax.topology.spanning_tree`,
        :func:`decjax.from_networkx` of a tree) or trees of a period; any other graph is
        refused at construction.

    Examples:
      >>> import optax, decjax
      >>> tx = decjax.chain(optax.adam(1e-3), decjax.algorithms.relaysum(decjax.topology.chain(8)))
    """
    routes = relay_routes(topology)
    n = topology.n

    def init(params):
        reference = jax.tree.map(
            lambda x: jnp.broadcast_to(_axis.mean_workers(x), x.shape).astype(x.dtype), params
        )
        return RelaySumState(zeros_count(), reference, relay_init(routes, params))

    def step(updates, state, params, **extra_args):
        del extra_args
        half = optax.apply_updates(params, updates)
        moved = jax.tree.map(jnp.subtract, half, state.reference)
        totals, _, relay = relay_round(routes, moved, state.relay)
        new = jax.tree.map(lambda r, s: r + s / n, state.reference, totals)
        record = relay_traffic(topology, routes, half)
        return new, RelaySumState(state.count + 1, state.reference, relay), record

    return from_step(init, step)


@constructor
def relaysgd(
    learning_rate: Any,
    topology: Topology,
    *,
    momentum: Any = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""RelaySGD (Vogels et al., 2021): SGD steps, then the RelaySum average on a tree.

    .. math::

       x_i^{(t+1/2)} = x_i^{(t)} - \eta\, m_i^{(t)}, \qquad
       x_i^{(t+1)} = \mathrm{RelaySum}_i\big(x^{(t+1/2)}\big)

    with :math:`m_i` the gradient or its local (heavy-ball) momentum buffer, never
    communicated (the paper's "local momentum"); see :func:`relaysum` for the average.
    Its convergence does not depend on the data heterogeneity :math:`\zeta^2`, unlike
    D-PSGD's on the same budget of messages. This is
    ``decjax.chain(optax.sgd(learning_rate, momentum), relaysum(topology))``.

    Args:
      learning_rate: :math:`\eta > 0`, or an optax schedule.
      topology: a spanning tree (see :func:`relaysum`).
      momentum: local heavy-ball momentum :math:`\beta \in [0, 1)`.
      nesterov: Nesterov momentum.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.algorithms.relaysgd(0.1, decjax.topology.chain(3))
      >>> x = jnp.zeros((3, 1))
      >>> g = jnp.array([[3.0], [0.0], [-6.0]])  # worker 0 and 2 are two hops apart
      >>> new, state, record = tx.step(g, tx.init(x), x)
      >>> [round(v, 4) for v in new[:, 0].tolist()]  # each hears its neighbours after one step
      [-0.1, 0.1, 0.2]

    References:
      Vogels, He, Koloskova, Karimireddy, Lin, Stich, Jaggi. *RelaySum for Decentralized
      Deep Learning on Heterogeneous Data*, NeurIPS 2021 (arXiv:2110.04175); code:
      github.com/epfml/relaysgd.
    """
    local = local_sgd_optimizer(learning_rate, momentum, nesterov)
    return local_then(per_worker(local), relaysum(topology))
