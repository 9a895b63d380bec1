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
    return per_example_losses_and_gradients(loss_fn, params, batch)[1]


def per_example_losses_and_gradients(
    loss_fn: Callable, params: Any, batch: Any, keys: jax.Array | None = None
) -> tuple[jax.Array, Any]:
    """``(losses (B,), gradients)`` of ``loss_fn`` at each example of ``batch``. With ``keys``
    (one per example), ``loss_fn(params, example, key)`` (a stateful model's dropout)."""
    check_callable("loss_fn", loss_fn)

    def one(example, *key):
        return jax.value_and_grad(_on_one_example)(params, loss_fn, example, *key)

    return jax.vmap(one)(batch, *(() if keys is None else (keys,)))


def _on_one_example(params: Any, loss_fn: Callable, example: Any, *key) -> jax.Array:
    """``loss_fn`` on a batch of the one ``example`` (every leaf given a batch axis of 1)."""
    return loss_fn(params, jax.tree.map(lambda x: x[None], example), *key)


def check_clip_norm(name: str, value: Any) -> None:
    """``value > 0``; ``inf`` (no clipping) passes, as do traced values."""
    if isinstance(value, int | float) and value == float("inf"):
        return
    check_positive(name, value)


def clip_per_example(per_example: Any, clip_norm: float) -> Any:
    """Each example's gradient scaled to norm at most ``clip_norm`` (over all its leaves)."""
    check_clip_norm("clip_norm", clip_norm)
    scale = clip_factors(per_example, clip_norm)
    return jax.tree.map(lambda x: x * scale.reshape(-1, *([1] * (x.ndim - 1))), per_example)


def clipped_sum(
    loss_fn: Callable,
    params: Any,
    batch: Any,
    clip_norm: float,
    weights: jax.Array | None = None,
    keys: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """``(sum of the losses, sum of the clipped per-example gradients)`` over ``batch``, each
    example weighted by ``weights`` (0 or 1: which slots of a padded batch are examples).

    The per-example gradients give the norms only; the sum is the gradient of the
    examples' losses weighted by their clipping factors (held constant), one batched
    backward pass: the same sum, without scaling and summing the per-example buffer."""
    size = jax.tree.leaves(batch)[0].shape[0]
    weights = jnp.ones(size) if weights is None else weights
    _, per = per_example_losses_and_gradients(loss_fn, params, batch, keys)
    factors = jax.lax.stop_gradient(clip_factors(per, clip_norm) * weights)

    def weighted(p):
        losses = _example_losses(loss_fn, p, batch, keys)
        return jnp.sum(jnp.where(weights > 0, losses, 0.0) * factors), losses

    grads, losses = jax.grad(weighted, has_aux=True)(params)
    return jnp.sum(jnp.where(weights > 0, losses, 0.0)), grads


def clip_factors(per_example: Any, clip_norm) -> jax.Array:
    """``(B,)``: :math:`\\min(1, C / \\lVert g_b \\rVert)` of each example's gradient."""
    leaves = jax.tree.leaves(per_example)
    squares = sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in leaves)
    norms = jnp.sqrt(squares)
    return jnp.minimum(1.0, clip_norm / jnp.where(norms > 0, norms, 1.0))


def _example_losses(loss_fn: Callable, params: Any, batch: Any, keys) -> jax.Array:
    """``(B,)``: ``loss_fn`` on each one-example batch, vmapped (one batched forward)."""

    def one(example, *key):
        return _on_one_example(params, loss_fn, example, *key)

    return jax.vmap(one)(batch, *(() if keys is None else (keys,)))


def add_noise(tree: Any, key: jax.Array, std: Any) -> Any:
    """``tree`` plus Gaussian noise of standard deviation ``std`` per coordinate, one draw per
    leaf from ``jax.random.split(key, leaves)``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


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
    check_clip_norm("clip_norm", clip_norm)
    _, grads = full_batch_private_gradient(
        loss_fn, params, batch, key, clip_norm=clip_norm, noise_multiplier=noise_multiplier
    )
    return grads


def full_batch_private_gradient(
    loss_fn: Callable,
    params: Any,
    batch: Any,
    noise_key: jax.Array,
    *,
    clip_norm,
    noise_multiplier,
    example_keys: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """``(mean loss, privatised gradient)`` of one worker on its whole ``batch`` every step
    (sampling rate 1: the full-batch Gaussian mechanism). Traced values pass unchecked."""
    size = jax.tree.leaves(batch)[0].shape[0]
    loss_sum, grad_sum = clipped_sum(loss_fn, params, batch, clip_norm, keys=example_keys)
    grads = jax.tree.map(lambda g: g / size, grad_sum)
    grads = add_noise(grads, noise_key, noise_std(clip_norm, noise_multiplier, size))
    return loss_sum / size, grads


def noise_std(clip_norm, noise_multiplier, denominator):
    r"""The noise's per-coordinate standard deviation :math:`\sigma C / B` (0 without noise,
    also when :math:`C = \infty`)."""
    return jnp.where(
        jnp.asarray(noise_multiplier) == 0, 0.0, noise_multiplier * clip_norm / denominator
    )
