"""Choco-SGD: decentralized SGD with compressed gossip."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax._axis import flatten_rows
from decjax._validation import as_key, check_in_range
from decjax.algorithms._common import (
    Gossip,
    check_learning_rate,
    constructor,
    from_step,
    learning_rate_at,
    zeros_count,
)
from decjax.gossip import TRAFFIC, Compressor, Links, Traffic
from decjax.gossip.compression import compress_rows
from decjax.topology import Topology


class ChocoState(NamedTuple):
    """State of :func:`choco_sgd`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    public: Any  # X-hat: the copies every neighbour holds of each worker's model
    key: jax.Array  # for random compressors


@constructor
def choco_sgd(
    learning_rate: Any,
    topology: Topology,
    *,
    compressor: Compressor,
    consensus_step: float = 1.0,
    key: jax.Array | None = None,
    backend: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Choco-SGD (Koloskova, Stich & Jaggi, 2019): gossip of compressed model differences.

    Every worker keeps public copies :math:`\hat X` (known to its neighbours) and
    sends only the compressed change :math:`Q`:

    .. math::

       X_{1/2} = X - \eta G, \qquad Q = \mathcal{Q}(X_{1/2} - \hat X) \ \text{(row-wise)},

       \hat X^+ = \hat X + Q, \qquad X^+ = X_{1/2} + \gamma\,(W - I)\,\hat X^+.

    With the identity compressor and :math:`\gamma = 1` this is exactly ATC
    D-PSGD. ``bytes_sent`` counts the compressed messages: per step each worker
    sends one message of ``compressor.bytes(d)`` bytes to each neighbour.

    Args:
      learning_rate: :math:`\eta > 0` or a schedule.
      topology: the communication graph.
      compressor: a :class:`decjax.gossip.Compressor` (``top_k``, ``random_k``,
        ``sign``, ``qsgd``, ``identity``), applied to each worker's flattened model.
      consensus_step: :math:`\gamma \in (0, 1]`; smaller for aggressive compression.
      key: ``jax.random.key`` for random compressors (default ``key(0)``).
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.choco_sgd(0.1, decjax.ring(4), compressor=decjax.gossip.top_k(1),
      ...                       consensus_step=0.5)
      >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 4 workers, one coordinate each
      >>> updates, state = tx.update(jnp.ones_like(x), tx.init(x), x)  # unit gradients
      >>> [round(v, 4) for v in optax.apply_updates(x, updates)[:, 0].tolist()]
      [0.5667, 0.9, 1.9, 2.2333]

    References:
      Koloskova, Stich, Jaggi. *Decentralized Stochastic Optimization and Gossip
      Algorithms with Compressed Communication*, ICML 2019 (arXiv:1902.00340).
    """
    check_learning_rate(learning_rate)
    if not isinstance(compressor, Compressor):
        raise TypeError(
            "compressor must be a decjax.gossip.Compressor (top_k, random_k, sign, qsgd, "
            f"identity), got {type(compressor).__name__}"
        )
    check_in_range("consensus_step", consensus_step, 0.0, 1.0, closed="right")
    gossip = Gossip(topology, backend=backend)
    key = jax.random.key(0) if key is None else as_key("key", key)

    def init(params):
        flat, _ = flatten_rows(params)
        compressor.check(flat.shape[1])
        return ChocoState(zeros_count(), optax.tree.zeros_like(params), key)

    def step(grads, state, params, **extra_args):
        del extra_args
        t = state.count
        half = optax.tree.add_scale(params, -learning_rate_at(learning_rate, t), grads)
        diff, unravel = flatten_rows(optax.tree.sub(half, state.public))
        key, sub = jax.random.split(state.key)
        q = compress_rows(compressor, sub, diff)
        public = optax.tree.add(state.public, unravel(q))
        mixed = gossip(public, t)
        new = jax.tree.map(lambda h, m, p: h + consensus_step * (m - p), half, mixed, public)
        message = jnp.float32(compressor.bytes(diff.shape[1], jnp.dtype(diff.dtype).itemsize))
        info = {
            "bytes_sent": topology.copies_sent(t) * message,
            TRAFFIC: Traffic(links=Links.of(topology, t, message)),
        }
        return new, ChocoState(t + 1, public, key), info

    return from_step(init, step)
