r"""Data heterogeneity as the theory states it: :math:`\zeta^2` at a model.

Koloskova et al. (ICML 2020, "A unified theory of decentralized SGD") bound
decentralized SGD by the spread of the workers' gradients,

.. math:: \zeta^2(x) = \frac1n \sum_i \lVert \nabla f_i(x) - \nabla f(x) \rVert^2,
   \qquad f = \frac1n \sum_i f_i,

with :math:`f_i` worker :math:`i`'s loss on its whole shard. Papers report a
Dirichlet :math:`\alpha` instead; :func:`heterogeneity` measures the
:math:`\zeta^2` a partition gives, so the two can be mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_callable, check_int, check_stacked
from decjax.data.sampling import WorkerData


def heterogeneity(
    loss_fn: Callable, params: Any, data: Any, *, sample: int | None = None
) -> jax.Array:
    r""":math:`\zeta^2` at the one (unstacked) model ``params``: each worker's gradient of
    ``loss_fn`` on all of its data against their mean.

    ``data`` is a :class:`~decjax.data.WorkerData` (each worker's whole shard: the
    gradient of the mean loss over its ``count`` examples, the padding left out) or a
    pytree stacked over the workers (each worker's full batch). ``loss_fn(params,
    batch)`` averages over its batch; on a shard it is evaluated example by example
    (one batched forward and backward per worker, workers one after another).
    ``sample``: on shards, use a fixed uniform sample of at most this many examples of
    each (drawn without replacement from ``jax.random.key(0)``; ``None``: the whole shard).

    Examples:
      >>> import jax, decjax
      >>> q = decjax.problems.quadratics(8, 3, key=jax.random.key(0), zeta2=2.0)
      >>> round(float(decjax.data.heterogeneity(q.loss, q.optimum, q.data)), 4)
      2.0
    """
    check_callable("loss_fn", loss_fn)
    if isinstance(data, WorkerData):
        indices, counts = data.indices, data.counts
        if sample is not None:
            indices, counts = _sampled(indices, counts, check_int("sample", sample, minimum=1))
        grads = jax.lax.map(
            lambda shard: _shard_gradient(loss_fn, params, data, *shard), (indices, counts)
        )
    else:
        check_stacked("data", data)
        grads = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, data)
    flat = jnp.concatenate(
        [g.reshape(g.shape[0], -1).astype(jnp.float32) for g in jax.tree.leaves(grads)], axis=1
    )
    return jnp.mean(jnp.sum((flat - jnp.mean(flat, axis=0, keepdims=True)) ** 2, axis=1))


def _sampled(indices, counts, sample: int):
    """Each worker's first ``sample`` examples of a fixed random order of its shard."""
    slots = indices.shape[1]
    keys = jax.random.split(jax.random.key(0), indices.shape[0])

    def one(key, idx, count):
        u = jax.random.uniform(key, (slots,))
        order = jnp.argsort(jnp.where(jnp.arange(slots) < count, u, 2.0))  # padding last
        return idx[order[: min(sample, slots)]]

    return jax.vmap(one)(keys, indices, counts), jnp.minimum(counts, sample)


def _shard_gradient(loss_fn: Callable, params: Any, data: WorkerData, indices, count):
    """The gradient of the mean of ``loss_fn`` over the first ``count`` of ``indices``."""
    weights = (jnp.arange(indices.shape[0]) < count).astype(jnp.float32) / count
    x, y = jnp.take(data.x, indices, axis=0), jnp.take(data.y, indices, axis=0)

    def mean_loss(p):
        def one(xb, yb):
            return loss_fn(p, (xb[None], yb[None]))

        return jnp.sum(jax.vmap(one)(x, y) * weights)

    return jax.grad(mean_loss)(params)
