"""The push-sum family on directed graphs: SGP, overlap SGP (OSGP) and Push-DIGing.

On a column-stochastic ``P`` (:func:`decjax.topology.from_digraph`) gossip
conserves the worker *sum* but converges to a weighted average. Push-sum
(Kempe, Dobra, Gehrke 2003) mixes a scalar weight per worker alongside the
numerators, ``x <- P x``, ``w <- P w``, and reads the de-biased ratio
``z = x / w``, which converges to the exact average. In the algorithms below
``params`` (what ``simulate`` returns and evaluates) are the de-biased ``z``;
the numerators and weights live in the state. On a doubly stochastic ``W`` the
weights stay 1 and SGP is D-PSGD.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax._platform import separated
from decjax._validation import as_key
from decjax.algorithms._common import (
    Gossip,
    also_sent,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    local_then,
    zeros_count,
)
from decjax.algorithms._dpsgd import local_sgd_optimizer
from decjax.algorithms.delays import NEVER, Delays, deliveries, fixed_delay, incoming
from decjax.gossip import TRAFFIC, Links, Traffic, worker_bytes
from decjax.gossip.push_sum import debias, unit_weights
from decjax.topology import Topology


class PushSumState(NamedTuple):
    """State of :func:`sgp`: numerators ``x`` and push-sum weights ``w`` (``z = x / w``)."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    numerators: Any  # x, stacked (n, ...); None on a doubly stochastic W (x is the params)
    weights: jax.Array  # w, (n,)


class OverlapState(NamedTuple):
    """State of :func:`osgp`: push-sum plus the messages still in flight."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    numerators: Any
    weights: jax.Array
    key: jax.Array
    sent: Any  # (x_half, w) each worker pushed at the last ``buffer`` ticks: (n, B, ...)
    shares: jax.Array  # (n, B, n): P_t[i, j] of the message j -> i sent at that tick
    delays: jax.Array  # (n, B, n): its delay (NEVER: no message)


class PushDIGingState(NamedTuple):
    """State of :func:`push_diging`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    numerators: Any  # u, stacked (n, ...)
    weights: jax.Array  # v, (n,)
    tracker: Any  # y_{t-1}
    prev_grads: Any  # g_{t-1}


@constructor
def sgp(
    learning_rate: Any,
    topology: Topology,
    *,
    momentum: Any = 0.0,
    nesterov: bool = False,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic Gradient Push (Assran, Loizou, Ballas, Rabbat, ICML 2019).

    Push-sum gossip with a local SGD step on the de-biased parameters
    :math:`z_i = x_i / w_i`:

    .. math::

       x_i \leftarrow \sum_j P_{ij} \bigl(x_j - \eta\, m_j\bigr), \qquad
       w_i \leftarrow \sum_j P_{ij} w_j, \qquad z_i = x_i / w_i,

    with :math:`m_j` the (optionally momentum) stochastic gradient at
    :math:`z_j`. ``P`` needs only to be column-stochastic (a directed graph
    where each worker splits its mass over its out-neighbours); on a doubly
    stochastic ``W`` the weights stay exactly 1 (gossip's difference form) and
    SGP is D-PSGD (tested), computed without the numerators and the division.
    ``params`` are the de-biased :math:`z`; the state holds :math:`x` (``None``
    on a doubly stochastic ``W``, where it is ``z``) and :math:`w`. Like
    D-PSGD it keeps an :math:`O(\eta)` bias on heterogeneous data (see
    :func:`push_diging` for the exact method).

    Args:
      learning_rate: :math:`\eta > 0` or an optax schedule.
      topology: any connected topology, column-stochastic or doubly stochastic.
      momentum: local heavy-ball momentum (the paper uses Nesterov 0.9).
      nesterov: Nesterov momentum.
      backend: force a gossip backend.

    Examples:
      >>> import jax, jax.numpy as jnp, networkx as nx, decjax
      >>> topo = decjax.topology.from_digraph(nx.DiGraph([(0, 1), (1, 2), (2, 0), (0, 2)]))
      >>> tx = decjax.sgp(0.1, topo)
      >>> z = jnp.array([[3.0], [0.0], [0.0]])
      >>> state, step = tx.init(z), jax.jit(tx.step)
      >>> for _ in range(60):
      ...     z, state, _ = step(jnp.zeros_like(z), state, z)  # no gradient: push-sum
      >>> [round(v, 6) for v in z[:, 0].tolist()]  # the exact average, not a weighted one
      [1.0, 1.0, 1.0]

    References:
      Assran, Loizou, Ballas, Rabbat. *Stochastic Gradient Push for Distributed
      Deep Learning*, ICML 2019 (arXiv:1811.10792). Kempe, Dobra, Gehrke.
      *Gossip-based computation of aggregate information*, FOCS 2003.
    """
    local = local_sgd_optimizer(learning_rate, momentum, nesterov)
    return local_then(local, push_step(topology, backend=backend))


def push_step(topology: Topology, *, backend: str | None = None):
    """The push-sum combine of SGP: ``(x + u, w) <- P (x + u, w)``, params ``z = x / w``."""
    gossip = Gossip(topology, backend=backend, needs="column")
    # On a doubly stochastic W, gossip in the difference form keeps w = 1 exactly
    # (w_i + sum_j W_ij (w_j - w_i) with every difference 0): then z = x, and neither
    # the numerators nor the division are needed (SGP is D-PSGD, bit for bit).
    constant_weights = not topology.push

    def init(params):
        return PushSumState(
            zeros_count(), None if constant_weights else params, unit_weights(params)
        )

    def step(updates, state, params, **extra_args):
        del extra_args
        t = state.count
        info = gossip.traffic((updates, state.weights), t)  # SGP's messages carry w too
        if constant_weights:
            new = gossip(optax.tree.add(params, updates), t)
            return new, PushSumState(t + 1, None, state.weights), info
        half = optax.tree.add(state.numerators, updates)
        numerators, weights = gossip((half, state.weights), t)
        return debias(numerators, weights), PushSumState(t + 1, numerators, weights), info

    return from_step(init, step)


@constructor
def osgp(
    learning_rate: Any,
    topology: Topology,
    *,
    overlap: int = 1,
    delays: Delays | None = None,
    momentum: Any = 0.0,
    nesterov: bool = False,
    key: jax.Array | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Overlap SGP (Assran et al., 2019): push-sum messages are used when they arrive.

    Each worker keeps its own share :math:`P_{jj}` of :math:`(x_j - \eta m_j,
    w_j)` at once and pushes the share :math:`P_{ij}` to each out-neighbour
    :math:`i`, which adds it ``d`` ticks later. Nobody waits: with delays the
    mass in flight is missing from the workers, but numerators and weights
    miss it alike, so :math:`z = x / w` stays unbiased, and all of it arrives
    (no message is lost). With ``overlap=0`` this is exactly :func:`sgp`
    (tested).

    Args:
      learning_rate: :math:`\eta > 0` or an optax schedule.
      topology: as for :func:`sgp` (mixed as its dense matrix at each tick).
      overlap: every message arrives ``overlap`` ticks after it is sent
        (``fixed_delay(overlap)``); ignored when ``delays`` is given.
      delays: a :class:`~decjax.algorithms.Delays` distribution per message
        (the DASGD machinery: ``uniform_delay``, ``geometric_delay``...).
      momentum: local heavy-ball momentum, as in :func:`sgp`.
      nesterov: Nesterov momentum.
      key: ``jax.random.key`` for random delays (default ``key(0)``).

    References:
      Assran, Loizou, Ballas, Rabbat, ICML 2019 (arXiv:1811.10792), Section 5 (OSGP).
    """
    local = local_sgd_optimizer(learning_rate, momentum, nesterov)
    delays = fixed_delay(overlap) if delays is None else delays
    if not isinstance(delays, Delays):
        raise TypeError(f"delays must be a decjax.algorithms.Delays, got {type(delays).__name__}")
    key = jax.random.key(0) if key is None else as_key("key", key)
    return local_then(local, _overlap_step(topology, delays, key))


def _overlap_step(topology: Topology, delays: Delays, key: jax.Array):
    """Push-sum with each pushed share delivered after its delay (a ring buffer on device)."""
    Gossip(topology, needs="column")  # validates the topology
    n, buffer = topology.n, delays.max_delay + 1

    def traffic(off, t, message_bytes):
        """Messages in flight (nobody waits) with delays, waited for without (= SGP)."""
        if delays.max_delay == 0:
            return {TRAFFIC: Traffic(links=Links.of(topology, t, message_bytes))}
        inflight = (off != 0).astype(jnp.float32) * jnp.float32(message_bytes)
        return {TRAFFIC: Traffic(inflight=inflight)}

    def init(params):
        rows = jax.tree.leaves(params)[0].shape[0]
        w = unit_weights(params)
        sent = jax.tree.map(
            lambda x: jnp.zeros((x.shape[0], buffer, *x.shape[1:]), x.dtype), (params, w)
        )
        return OverlapState(
            count=zeros_count(),
            numerators=params,
            weights=w,
            key=key,
            sent=sent,
            shares=jnp.zeros((rows, buffer, n), w.dtype),
            delays=jnp.full((rows, buffer, n), NEVER, jnp.int32),
        )

    def step(updates, state, params, **extra_args):
        del params, extra_args
        t, slot = state.count, state.count % buffer
        key, k_delay = jax.random.split(state.key)
        matrix = topology.matrix(t).astype(state.weights.dtype)
        off = jnp.where(jnp.eye(n, dtype=bool), 0.0, matrix)
        kept = _axis.local_rows(1.0 - off.sum(axis=0))  # each sender's own share
        messages = jnp.sum(off != 0) / n
        off = _axis.local_rows(off)
        link_delay = _axis.local_rows(delays.sample(k_delay, n))
        half = (optax.tree.add(state.numerators, updates), state.weights)
        sent = jax.tree.map(lambda buf, v: buf.at[:, slot].set(v), state.sent, half)
        shares = state.shares.at[:, slot].set(off)
        delay_buf = state.delays.at[:, slot].set(jnp.where(off != 0, link_delay, NEVER))
        _, slots, due = deliveries(delay_buf, t, buffer)
        weights = jnp.where(due, shares[:, slots, :], 0.0)
        received = jax.tree.map(lambda buf: incoming(buf, slots, weights, n), sent)

        def keep_and_add(v, got):
            return (kept.reshape(kept.shape + (1,) * (v.ndim - 1)) * v + got).astype(v.dtype)

        numerators, w = jax.tree.map(keep_and_add, half, received)
        info = {"bytes_sent": messages * worker_bytes(half), **traffic(off, t, worker_bytes(half))}
        new_state = OverlapState(t + 1, numerators, w, key, sent, shares, delay_buf)
        return debias(numerators, w), new_state, info

    return from_step(init, step)


@constructor
def push_diging(
    learning_rate: Any,
    topology: Topology,
    *,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Push-DIGing / ADD-OPT (Nedić, Olshevsky, Shi 2017): gradient tracking on directed graphs.

    With :math:`y_0 = \nabla f(x_0)`, :math:`u_0 = x_0`, :math:`v_0 = 1`:

    .. math::

       u^{+} = P\,(u - \eta\, y), \quad v^{+} = P v, \quad x^{+} = u^{+} / v^{+}, \quad
       y^{+} = P y + \nabla f(x^{+}) - \nabla f(x).

    ``P`` column-stochastic conserves :math:`\sum_i y_i = \sum_i \nabla f_i(x_i)`,
    so with full gradients and a constant small step every worker reaches the
    exact minimizer of :math:`\sum_i f_i` (tested to 1e-5 in float32), where
    :func:`sgp` keeps an :math:`O(\eta)` bias. Each step pushes the numerators,
    the weights and the tracker. ``params`` are the de-biased :math:`x`.

    Args:
      learning_rate: :math:`\eta > 0` or an optax schedule.
      topology: a column-stochastic (or doubly stochastic) topology.
      backend: force a gossip backend.

    References:
      Nedić, Olshevsky, Shi. *Achieving geometric convergence for distributed
      optimization over time-varying graphs*, SIAM J. Optim. 27(4), 2017
      (Push-DIGing). Xi, Khan. *ADD-OPT: accelerated distributed directed
      optimization*, IEEE TAC 2018.
    """
    check_learning_rate(learning_rate)
    gossip = Gossip(topology, backend=backend, needs="column")

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return PushDIGingState(zeros_count(), params, unit_weights(params), zeros, zeros)

    def step(grads, state, params, **extra_args):
        del params, extra_args
        t = state.count
        innovation = optax.tree.sub(grads, state.prev_grads)
        tracked = optax.tree.add(gossip(state.tracker, t - 1), innovation)
        tracker = jax.tree.map(lambda g, y: jnp.where(t == 0, g, y), grads, tracked)
        # the tracker is gossiped again next step: keep XLA (CPU) from fusing the two
        # gossips, which recomputed this one per read (3x slower on a 64-worker ring)
        tracker = separated(tracker, t)
        eta = learning_rate_at(learning_rate, t)
        half = optax.tree.add_scale(state.numerators, -eta, tracker)
        numerators, weights = gossip((half, state.weights), t)
        pushed = gossip.traffic((half, state.weights), t)
        info = also_sent(pushed, gossip.traffic(tracker, t - 1), t > 0)
        new_state = PushDIGingState(t + 1, numerators, weights, tracker, grads)
        return debias(numerators, weights), new_state, info

    return from_step(init, step)
