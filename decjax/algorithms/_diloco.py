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

from functools import partial

import jax
import optax

from decjax._validation import as_key, check_in_range, check_int, check_positive
from decjax.algorithms._combine import per_worker
from decjax.algorithms._common import (
    DecentralizedTransformation,
    Gossip,
    constructor,
    from_step,
)
from decjax.algorithms._diloco_rounds import Rounds
from decjax.gossip import Compressor
from decjax.topology import Topology


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
    reported as ``Traffic.allreduce`` (:mod:`decjax.timing`: a ring all-reduce)
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
    rounds = Rounds(
        per_worker(inner), per_worker(outer), every, fragments, overlap, alpha, gossip, compressor
    )
    return from_step(partial(rounds.init, key=key), rounds.step)
