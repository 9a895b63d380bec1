"""On-device augmentation inside the jitted step, keyed per worker and step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_callable, check_int


def random_crop_flip(images: jax.Array, key: jax.Array, *, padding: int = 4, flip: bool = True):
    """The CIFAR recipe on a batch ``(B, H, W, C)``: pad by ``padding`` with zeros, crop a
    random ``H x W`` window per image, and flip each image left-right with probability 1/2.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> x = jnp.arange(2 * 4 * 4 * 1.0).reshape(2, 4, 4, 1)
      >>> decjax.data.random_crop_flip(x, jax.random.key(0), padding=1).shape
      (2, 4, 4, 1)
    """
    padding = check_int("padding", padding, minimum=0)
    if jnp.ndim(images) != 4:
        raise ValueError(f"images must be a batch (B, H, W, C), got shape {jnp.shape(images)}")
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(key)
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = jnp.pad(images, pad)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    out = jax.vmap(crop)(padded, offsets)
    if flip:
        mirrored = jax.random.bernoulli(flip_key, 0.5, (batch,))[:, None, None, None]
        out = jnp.where(mirrored, out[:, :, ::-1, :], out)
    return out


def augmented(
    loss_fn: Callable, *, stateful: bool = False, augment: Callable = random_crop_flip
) -> Callable:
    """A stateful loss that augments each worker's batch ``(x, y)`` with its own key first.

    ``simulate`` draws a key per worker and step for stateful losses; this
    wrapper spends part of it on ``augment(x, key)`` and passes the rest on.
    ``loss_fn`` is a plain ``loss(params, batch)`` (then give
    ``model_state={}``) or, with ``stateful=True``, a stateful
    ``loss(params, batch, state, key)`` such as a BatchNorm model's.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.lenet5(channels=3, size=32)
      >>> loss = decjax.data.augmented(model.loss)  # simulate(loss, ..., model_state={})
    """
    check_callable("loss_fn", loss_fn)
    check_callable("augment", augment)

    def loss(params: Any, batch: Any, state: Any, key: jax.Array):
        augment_key, model_key = jax.random.split(key)
        x, y = batch
        batch = (augment(x, augment_key), y)
        if stateful:
            return loss_fn(params, batch, state, model_key)
        return loss_fn(params, batch), (state, {})

    return loss
