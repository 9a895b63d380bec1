r"""DP-SGD's gradient on a Poisson sample of one worker's shard: what the accountant assumes.

Every example of the worker's shard (``count`` of its ``slots``) is in the step's
sample independently with probability :math:`q = B / \text{count}`, so the
sample's size is Binomial with mean :math:`B`, the ``expected_batch``. The
privatised gradient divides by :math:`B`, not by the sample's size (dividing
by a size that depends on the data would leak it; Opacus does the same):

.. math:: \tilde g = \frac1B \Big( \sum_{b \in S} \mathrm{clip}_C(g_b) + \sigma C\, \xi \Big).

Shapes are static under ``jit``: the sampled examples are moved to the front
of the shard and processed ``capacity`` at a time in a ``while_loop`` that
stops after the last one, so no example is dropped and a step costs
:math:`\lceil |S| / \text{capacity} \rceil` passes (under ``vmap``, the largest
over the workers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from decjax.privacy.mechanism import add_noise, clipped_sum, noise_std


def capacity(expected_batch: int, slots: int) -> int:
    """Examples per pass: the expected batch plus three standard deviations (a pass or two a
    step), at most the shard's slots."""
    return int(min(slots, expected_batch + math.ceil(3 * math.sqrt(expected_batch))))


def poisson_mask(key: jax.Array, count, slots: int, rate) -> jax.Array:
    """``(slots,)`` bool: each of the first ``count`` slots independently with probability
    ``rate`` (the padding after them never)."""
    return (jax.random.uniform(key, (slots,)) < rate) & (jnp.arange(slots) < count)


def poisson_private_gradient(
    loss_fn: Callable,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    indices: jax.Array,
    count,
    key: jax.Array,
    noise_key: jax.Array,
    *,
    expected_batch: int,
    clip_norm,
    noise_multiplier,
    example_keys: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """``(mean loss over the sample, privatised gradient)`` of one worker whose shard is
    ``x[indices[:count]], y[indices[:count]]``; the sample is drawn from ``key``, the noise
    from ``noise_key``. ``loss_fn(params, (x, y))``, or ``loss_fn(params, (x, y), key)`` with
    ``example_keys`` (one per slot of the shard)."""
    slots = indices.shape[0]
    width = capacity(expected_batch, slots)
    chosen = poisson_mask(key, count, slots, expected_batch / count)
    size = jnp.sum(chosen)
    order = jnp.argsort(~chosen, stable=True)  # the sample first, in shard order
    zero = jax.tree.map(jnp.zeros_like, params)

    def body(carry):
        start, loss_sum, grad_sum = carry
        positions = start + jnp.arange(width)
        slot = order[jnp.minimum(positions, slots - 1)]
        rows = indices[slot]
        keys = None if example_keys is None else example_keys[slot]
        losses, grads = clipped_sum(
            loss_fn,
            params,
            (jnp.take(x, rows, axis=0), jnp.take(y, rows, axis=0)),
            clip_norm,
            weights=(positions < size).astype(jnp.float32),
            keys=keys,
        )
        return start + width, loss_sum + losses, jax.tree.map(jnp.add, grad_sum, grads)

    def more(carry):
        return carry[0] < size

    _, loss_sum, grad_sum = jax.lax.while_loop(
        more, body, (jnp.zeros((), size.dtype), jnp.zeros((), jnp.float32), zero)
    )
    grads = jax.tree.map(lambda g: g / expected_batch, grad_sum)
    grads = add_noise(grads, noise_key, noise_std(clip_norm, noise_multiplier, expected_batch))
    return loss_sum / jnp.maximum(size, 1), grads
