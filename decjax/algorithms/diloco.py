r"""The DiLoCo family: ``H`` local steps of any optimizer, then an outer step on their sum.

Every worker runs an inner optax optimizer on its own data for ``H`` steps from
the outer model :math:`\theta^o`; then the workers average their *pseudo-gradients*
:math:`\Delta_i = \theta^o - \theta_i` and feed the average to an outer optax
optimizer (Nesterov SGD by default), whose result every worker restarts from:

.. math::

   \theta_i \leftarrow \text{inner}^{H}(\theta^o), \qquad
   \Delta = \tfrac1n \textstyle\sum_i (\theta^o - \theta_i), \qquad
   \theta^o \leftarrow \theta^o + \text{outer}(\Delta).

Variants here: :func:`diloco` (all-reduce), :func:`gossip_diloco` (the average
replaced by gossip on any topology, each worker keeping its own outer model and
optimizer state) and :func:`streaming_diloco` (parameters in ``P`` fragments
synchronised in turn, the outer step applied ``tau`` inner steps after the
pseudo-gradient was sent, and merged as :math:`\theta_i \leftarrow \alpha
\theta_i + (1 - \alpha) \theta^o`; pseudo-gradients optionally compressed).

The pseudo-gradient is accumulated from the inner updates, :math:`u_i =
\theta_i - \theta^o = \sum_k \text{update}_k`, never computed as the difference
of two nearby models (no cancellation in float32): one more model copy in the
state than the paper's implementation, and with ``H = 1``, an outer SGD of
rate 1 and no momentum, DiLoCo is all-reduce SGD bit for bit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax._validation import as_key, check_in_range, check_int, check_positive
from decjax.algorithms._common import (
    DecentralizedTransformation,
    Gossip,
    also_sent,
    constructor,
    flatten_rows,
    from_step,
    zeros_count,
)
from decjax.algorithms.combine import per_worker
from decjax.gossip import Compressor, Links, worker_bytes
from decjax.gossip.compression import compress_rows
from decjax.timing import ALLREDUCE_BYTES, LINK_BYTES, OVERLAP_STEPS
from decjax.topology import Topology


class DiLoCoState(NamedTuple):
    """State of the DiLoCo family; the model trees are tuples over the ``P`` fragments,
    each a list of that fragment's stacked ``(n, ...)`` leaves."""

    count: jax.Array  # int32: inner steps taken
    inner: Any  # the per-worker inner optimizer's state
    outer_params: Any  # theta^o per worker (equal on every worker with the all-reduce)
    outer: Any  # per-worker outer optimizer state, one per fragment
    drift: Any  # u = theta_i - theta^o, the sum of the inner updates since the outer step
    pending: Any  # pseudo-gradients sent and not yet applied (overlap > 0), else None
    key: jax.Array  # the compressor's randomness


def nesterov_outer(learning_rate: float = 0.7, momentum: float = 0.9):
    """DiLoCo's outer optimizer: ``optax.sgd(0.7, momentum=0.9, nesterov=True)`` (the paper's)."""
    check_positive("learning_rate", learning_rate)
    check_in_range("momentum", momentum, 0.0, 1.0, closed="left")
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


@constructor
def diloco(
    inner: optax.GradientTransformation,
    every: int,
    *,
    outer: optax.GradientTransformation | None = None,
    compressor: Compressor | None = None,
    key: jax.Array | None = None,
) -> DecentralizedTransformation:
    r"""DiLoCo (Douillard et al., 2023): ``every`` inner steps, then an all-reduced outer step.

    .. math::

       \theta_i \leftarrow \theta_i + \text{inner}_i(g_i) \ (\text{each step}), \qquad
       \text{every } H\text{: } \Delta = -\tfrac1n \textstyle\sum_i u_i, \quad
       \theta^o \leftarrow \theta^o + \text{outer}(\Delta), \quad \theta_i \leftarrow \theta^o

    with :math:`u_i = \theta_i - \theta^o` accumulated from the inner updates.
    The inner optimizer keeps its state across outer steps, per worker. With
    ``every=1``, ``outer=optax.sgd(1.0)`` and ``inner=optax.sgd(lr)`` it is
    synchronous all-reduce SGD (tested bit for bit). The all-reduce is
    reported as ``allreduce_bytes`` (:mod:`decjax.timing`: a ring all-reduce)
    and ``bytes_sent`` (``2 (n - 1) / n`` copies per worker).

    Args:
      inner: any optax optimizer, run by each worker on its own gradients
        (e.g. ``optax.adamw(4e-4)``, the paper's).
      every: inner steps ``H >= 1`` between outer steps.
      outer: the outer optax optimizer (default :func:`nesterov_outer`: SGD,
        learning rate 0.7, Nesterov momentum 0.9).
      compressor: compress each worker's pseudo-gradient before the average
        (:mod:`decjax.gossip` compressors: ``qsgd``, ``top_k``...).
      key: randomness of a random compressor (default ``key(0)``).

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.diloco(optax.sgd(0.1), every=2, outer=optax.sgd(1.0))
      >>> x = jnp.array([[1.0], [1.0]])  # 2 workers, one coordinate each
      >>> x, state, info = tx.step(jnp.ones_like(x), tx.init(x), x)  # a local step
      >>> [round(v, 4) for v in x[:, 0].tolist()], float(info["bytes_sent"])
      ([0.9, 0.9], 0.0)
      >>> x, state, info = tx.step(jnp.array([[1.0], [3.0]]), state, x)  # then the outer step
      >>> [round(v, 4) for v in x[:, 0].tolist()], float(info["bytes_sent"])  # 2 (n-1)/n x 4
      ([0.7, 0.7], 4.0)

    References:
      Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen.
      *DiLoCo: Distributed Low-Communication Training of Language Models*, 2023
      (arXiv:2311.08455).
    """
    return streaming_diloco(
        inner, every, fragments=1, overlap=0, alpha=0.0, outer=outer, compressor=compressor, key=key
    )


@constructor
def gossip_diloco(
    inner: optax.GradientTransformation,
    topology: Topology,
    every: int,
    *,
    outer: optax.GradientTransformation | None = None,
    compressor: Compressor | None = None,
    key: jax.Array | None = None,
    backend: str | None = None,
) -> DecentralizedTransformation:
    r"""DiLoCo with the all-reduce replaced by gossip: each worker keeps its own outer model.

    Every ``H`` steps worker :math:`i` gossips its outer model and its drift
    :math:`u_i` with its neighbours (one round of :math:`W_r`, :math:`r` the
    outer step) and takes its own outer step from the mixed outer model:

    .. math::

       \bar\theta^o_i = (W \theta^o)_i, \quad \Delta_i = -(W u)_i, \quad
       \theta^o_i \leftarrow \bar\theta^o_i + \text{outer}_i(\Delta_i), \quad
       \theta_i \leftarrow \theta^o_i.

    On the complete graph :math:`W = \mathbf 1 \mathbf 1^\top / n` this is
    :func:`diloco` (tested to float32 rounding); on any other topology the
    outer models differ between workers and contract at the rate of
    :math:`W`. Each message carries two model copies (outer model and drift;
    the drift compressed when a ``compressor`` is given).

    Args:
      inner: the per-worker optax optimizer, as in :func:`diloco`.
      topology: any doubly stochastic topology (time-varying ones advance per outer step).
      every: inner steps ``H >= 1`` between outer steps.
      outer: the outer optax optimizer, one state per worker (default :func:`nesterov_outer`).
      compressor: compress each worker's drift before it is gossiped.
      key: randomness of a random compressor.
      backend: force a gossip backend.

    References:
      Douillard et al., 2023 (arXiv:2311.08455); gossip in place of the
      all-reduce is new here.
    """
    return streaming_diloco(
        inner,
        every,
        fragments=1,
        overlap=0,
        alpha=0.0,
        outer=outer,
        topology=topology,
        compressor=compressor,
        key=key,
        backend=backend,
    )


@constructor
def streaming_diloco(
    inner: optax.GradientTransformation,
    every: int,
    *,
    fragments: int = 1,
    overlap: int = 0,
    alpha: float = 0.5,
    outer: optax.GradientTransformation | None = None,
    topology: Topology | None = None,
    compressor: Compressor | None = None,
    key: jax.Array | None = None,
    backend: str | None = None,
) -> DecentralizedTransformation:
    r"""Streaming DiLoCo (Douillard et al., 2025): fragments in turn, overlapped, blended.

    The parameter leaves are split into ``P = fragments`` fragments, leaf
    :math:`l` (in ``jax.tree.leaves`` order) in fragment :math:`l \bmod P`: a
    strided pattern, as the paper's over layers. Fragment :math:`p` is
    synchronised every ``H`` steps, at the steps :math:`t` with
    :math:`(t + 1 + \lfloor pH/P \rfloor) \bmod H = 0`, so the fragments'
    communications are spread over the ``H`` steps. At a synchronisation its
    pseudo-gradient :math:`\Delta^p = -\tfrac1n \sum_i u^p_i` (optionally
    compressed) is sent; ``overlap`` :math:`= \tau` steps later, while the
    workers went on with their inner steps, the outer step is applied and
    merged:

    .. math::

       \theta^{o,p} \leftarrow \theta^{o,p} + \text{outer}^p(\Delta^p), \qquad
       \theta^p_i \leftarrow \alpha\, \theta^p_i + (1 - \alpha)\, \theta^{o,p}.

    With ``fragments=1, overlap=0, alpha=0`` this is :func:`diloco` (tested); with
    ``topology``, gossip as in :func:`gossip_diloco`. The time model hides the
    communication behind the ``overlap`` inner steps.

    Args:
      inner: the per-worker optax optimizer, as in :func:`diloco`.
      every: inner steps ``H >= 1`` between a fragment's synchronisations.
      outer: the outer optax optimizer (default :func:`nesterov_outer`), one state per fragment.
      compressor: compress each worker's pseudo-gradient before it is sent.
      key: randomness of a random compressor.
      fragments: ``1 <= P <= every`` and at most the number of parameter leaves.
      overlap: ``0 <= tau < every`` inner steps between sending and applying.
      alpha: the blending weight in ``[0, 1]`` (the paper's default 0.5).
      topology: gossip on this topology instead of the all-reduce.
      backend: force a gossip backend (with ``topology``).

    References:
      Douillard, Donchev, Rush, Kale, Rusu, Sun, Ranzato, Szlam, Shen, Yin.
      *Streaming DiLoCo with overlapping communication: Towards a Distributed
      Free Lunch*, 2025 (arXiv:2501.18512).
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            f"inner must be an optax.GradientTransformation, got {type(inner).__name__}"
        )
    outer = nesterov_outer() if outer is None else outer
    if not isinstance(outer, optax.GradientTransformation):
        raise TypeError(
            f"outer must be an optax.GradientTransformation, got {type(outer).__name__}"
        )
    every = check_int("every", every, minimum=1)
    fragments = check_int("fragments", fragments, minimum=1)
    if fragments > every:
        raise ValueError(f"fragments ({fragments}) must be at most every ({every})")
    overlap = check_int("overlap", overlap, minimum=0)
    if overlap >= every:
        raise ValueError(f"overlap ({overlap}) must be less than every ({every})")
    check_in_range("alpha", alpha, 0.0, 1.0)
    if compressor is not None and not isinstance(compressor, Compressor):
        raise TypeError(
            f"compressor must be a decjax.gossip compressor, got {type(compressor).__name__}"
        )
    gossip = None if topology is None else Gossip(topology, backend=backend, needs="doubly")
    key = jax.random.key(0) if key is None else as_key("key", key)
    rounds = _Rounds(
        per_worker(inner), per_worker(outer), every, fragments, overlap, alpha, gossip, compressor
    )
    return from_step(partial(rounds.init, key=key), rounds.step)


@dataclass(frozen=True)
class _Rounds:
    """The inner steps and each fragment's outer rounds (the shared core of the family)."""

    inner: Any
    outer: Any
    every: int
    fragments: int
    overlap: int
    alpha: float
    gossip: Gossip | None
    compressor: Compressor | None

    def split(self, tree) -> tuple[list, ...]:
        """A tree's leaves as ``P`` lists, leaf ``l`` in fragment ``l mod P``."""
        leaves = jax.tree.leaves(tree)
        return tuple(leaves[p :: self.fragments] for p in range(self.fragments))

    def join(self, parts: tuple[list, ...], like) -> Any:
        leaves = list(jax.tree.leaves(like))
        for p, part in enumerate(parts):
            leaves[p :: self.fragments] = part
        return jax.tree.unflatten(jax.tree.structure(like), leaves)

    def init(self, params, key) -> DiLoCoState:
        count = len(jax.tree.leaves(params))
        if count < self.fragments:
            raise ValueError(
                f"fragments ({self.fragments}) must be at most the number of parameter "
                f"leaves ({count})"
            )
        if self.gossip is not None:
            n = _axis.total_workers(jax.tree.leaves(params)[0].shape[0])
            if n != self.gossip.topology.n:
                raise ValueError(f"params have {n} workers, the topology {self.gossip.topology.n}")
        parts = self.split(params)
        if self.compressor is not None:
            for part in parts:
                self.compressor.check(sum(x[0].size for x in part))
        outer_params = parts
        if self.gossip is None:  # one outer model: worker 0's (all start from the same model)
            outer_params = tuple(
                [jnp.broadcast_to(_axis.gather_rows(x)[:1], x.shape) for x in part]
                for part in parts
            )
        zeros = tuple(optax.tree.zeros_like(part) for part in parts)
        return DiLoCoState(
            count=zeros_count(),
            inner=self.inner.init(params),
            outer_params=outer_params,
            outer=tuple(self.outer.init(part) for part in outer_params),
            drift=tuple(map(optax.tree.sub, parts, outer_params)),
            pending=zeros if self.overlap else None,
            key=key,
        )

    def step(self, grads, state: DiLoCoState, params, **extra_args):
        t, like = state.count, params
        updates, inner = self.inner.update(grads, state.inner, params, **extra_args)
        params = list(self.split(optax.apply_updates(params, updates)))
        drift = list(map(optax.tree.add, state.drift, self.split(updates)))
        keys = jax.random.split(state.key, self.fragments + 1)
        outer_params, outer, pending = list(state.outer_params), list(state.outer), []
        traffic = self._silent()
        for p in range(self.fragments):
            offset = p * self.every // self.fragments
            sent_at = t - self.overlap  # the step whose pseudo-gradient is applied now
            launch = (t + 1 + offset) % self.every == 0
            apply = ((sent_at + 1 + offset) % self.every == 0) & (sent_at >= 0)
            waiting = state.pending[p] if self.overlap else optax.tree.zeros_like(drift[p])
            theta_o, u, delta, sent = jax.lax.cond(
                launch,
                lambda theta_o, u, waiting, key: self._send(theta_o, u, key, t // self.every),
                lambda theta_o, u, waiting, key: (theta_o, u, waiting, self._silent()),
                outer_params[p],
                drift[p],
                waiting,
                keys[p],
            )
            traffic = also_sent(traffic, sent)
            if self.overlap:  # send now, apply what was sent overlap steps ago
                pending.append(delta)
                delta = state.pending[p]
            outer_params[p], outer[p], drift[p], params[p] = jax.lax.cond(
                apply,
                self._apply,
                lambda theta_o, outer_state, u, x, delta: (theta_o, outer_state, u, x),
                theta_o,
                outer[p],
                u,
                params[p],
                delta,
            )
        if self.overlap:
            traffic[OVERLAP_STEPS] = jnp.float32(self.overlap)
        new_state = DiLoCoState(
            t + 1,
            inner,
            tuple(outer_params),
            tuple(outer),
            tuple(drift),
            tuple(pending) if self.overlap else None,
            keys[-1],
        )
        return self.join(tuple(params), like), new_state, traffic

    def _silent(self) -> dict:
        """The record of a step that sends nothing (the same keys as one that sends)."""
        if self.gossip is None:
            return {"bytes_sent": jnp.float32(0.0), ALLREDUCE_BYTES: jnp.float32(0.0)}
        return {
            "bytes_sent": jnp.float32(0.0),
            LINK_BYTES: Links.silent(self.gossip.topology, self.gossip.rounds),
        }

    def _send(self, theta_o, u, key, outer_step):
        """Send one fragment's pseudo-gradient: ``(theta_o, u, delta, traffic)`` after it."""
        message = u if self.compressor is None else self._compress(u, key)
        size = jnp.float32(self._message_bytes(u))
        n = _axis.total_workers(jax.tree.leaves(u)[0].shape[0])
        if self.gossip is None:  # an all-reduce of the pseudo-gradients
            delta = [-jnp.broadcast_to(_axis.mean_workers(q), q.shape) for q in message]
            traffic = {"bytes_sent": 2 * (n - 1) / n * size, ALLREDUCE_BYTES: size}
            return theta_o, u, delta, traffic
        moved_o, moved_q = self.gossip.delta((theta_o, message), outer_step)
        theta_o = optax.tree.add(theta_o, moved_o)  # the mixed outer model
        delta = [-(q + m) for q, m in zip(message, moved_q, strict=True)]
        u = optax.tree.sub(u, moved_o)  # so that theta_i = theta_o + u is unchanged
        grown = (worker_bytes(theta_o) + size) / worker_bytes(theta_o)  # outer model and drift
        links = self.gossip.links(theta_o, outer_step).scaled(grown)
        sent = self.gossip.bytes(theta_o, outer_step) * grown
        return theta_o, u, delta, {"bytes_sent": sent, LINK_BYTES: links}

    def _apply(self, theta_o, outer_state, u, x, delta):
        """The outer step of one fragment, merged into the workers' models."""
        step, outer_state = self.outer.update(delta, outer_state, theta_o)
        theta_o = optax.apply_updates(theta_o, step)
        u = jax.tree.map(lambda d, s: (self.alpha * (d - s)).astype(d.dtype), u, step)
        return theta_o, outer_state, u, optax.tree.add(theta_o, u)

    def _compress(self, u, key):
        """Each worker's drift of one fragment (a list of leaves), compressed as one vector."""
        flat, unravel = flatten_rows(u)
        return unravel(compress_rows(self.compressor, key, flat))

    def _message_bytes(self, u) -> int:
        if self.compressor is None:
            return worker_bytes(u)
        d = sum(x[0].size for x in u)
        return self.compressor.bytes(d, jnp.dtype(u[0].dtype).itemsize)
