r"""The Gaussian mechanism on one worker's minibatch: per-example gradients, clipped, noised.

For a worker's minibatch of :math:`B` examples with per-example gradients
:math:`g_b`, the privatised gradient is (DP-SGD, Abadi et al., CCS 2016)

.. math:: \tilde g = \frac1B \Big( \sum_b \mathrm{clip}_C(g_b) + \sigma C\, \xi \Big),
   \qquad \mathrm{clip}_C(g) = g \min\big(1, C / \lVert g \rVert\big),
   \quad \xi \sim \mathcal N(0, I),

the norm over all of a model's parameters. ``noise_multiplier`` is
:math:`\sigma`: the noise's per-coordinate standard deviation is
:math:`\sigma C / B`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_callable, check_nonnegative, check_positive


def per_example_gradients(loss_fn: Callable, params: Any, batch: Any) -> Any:
    """The gradient of ``loss_fn`` at each example of ``batch`` (every leaf's leading axis is
    the batch): a tree of ``(B, ...)`` leaves. ``loss_fn(params, batch)`` is called on
    one-example batches, so a loss that averages over its batch gives each example's."""
    check_callable("loss_fn", loss_fn)

    def one(example):
        return jax.grad(loss_fn)(params, jax.tree.map(lambda x: x[None], example))

    return jax.vmap(one)(batch)


def clip_per_example(per_example: Any, clip_norm: float) -> Any:
    """Each example's gradient scaled to norm at most ``clip_norm`` (over all its leaves)."""
    check_positive("clip_norm", clip_norm)
    leaves = jax.tree.leaves(per_example)
    squares = sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in leaves)
    norms = jnp.sqrt(squares)
    scale = jnp.minimum(1.0, clip_norm / jnp.where(norms > 0, norms, 1.0))
    return jax.tree.map(lambda x: x * scale.reshape(-1, *([1] * (x.ndim - 1))), per_example)


def private_gradient(
    loss_fn: Callable,
    params: Any,
    batch: Any,
    key: jax.Array,
    *,
    clip_norm: float,
    noise_multiplier: float,
) -> Any:
    r""":math:`\tilde g`: the mean of the clipped per-example gradients plus Gaussian noise of
    per-coordinate standard deviation ``noise_multiplier * clip_norm / B`` drawn from ``key``
    (one draw per leaf, from ``jax.random.split(key, leaves)``). ``noise_multiplier = 0``
    adds nothing."""
    check_nonnegative("noise_multiplier", noise_multiplier)
    clipped = clip_per_example(per_example_gradients(loss_fn, params, batch), clip_norm)
    size = jax.tree.leaves(clipped)[0].shape[0]
    mean = jax.tree.map(lambda x: jnp.sum(x, axis=0) / size, clipped)
    if noise_multiplier == 0:
        return mean
    leaves, treedef = jax.tree.flatten(mean)
    keys = jax.random.split(key, len(leaves))
    std = noise_multiplier * clip_norm / size
    noisy = [
        x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)
