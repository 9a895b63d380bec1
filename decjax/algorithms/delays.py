"""Message delay distributions for asynchronous simulation (in ticks, bounded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._validation import check_in_range, check_int

NEVER = np.iinfo(np.int32).max // 2  # "no such message" in delay and arrival buffers


class Delays(NamedTuple):
    """``sample(key, n) -> (n, n)`` int32 delays of messages ``j -> i``, each ``<= max_delay``."""

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    max_delay: int


def fixed_delay(delay: int) -> Delays:
    """Every message takes exactly ``delay`` ticks (0: delivered in the tick it is sent).

    Examples:
      >>> import jax, decjax
      >>> decjax.algorithms.fixed_delay(2).sample(jax.random.key(0), 2).tolist()
      [[2, 2], [2, 2]]
    """
    delay = check_int("delay", delay, minimum=0)
    return Delays(f"fixed({delay})", lambda key, n: jnp.full((n, n), delay, jnp.int32), delay)


def uniform_delay(max_delay: int) -> Delays:
    """Delays uniform on ``{0, ..., max_delay}``, independent per message (bounded staleness).

    Examples:
      >>> import jax, decjax
      >>> d = decjax.algorithms.uniform_delay(4).sample(jax.random.key(0), 8)
      >>> int(d.min()) >= 0 and int(d.max()) <= 4
      True
    """
    max_delay = check_int("max_delay", max_delay, minimum=0)

    def sample(key, n):
        return jax.random.randint(key, (n, n), 0, max_delay + 1, dtype=jnp.int32)

    return Delays(f"uniform(0..{max_delay})", sample, max_delay)


def geometric_delay(p: float, max_delay: int) -> Delays:
    """Geometric delays ``P(d = k) = p (1 - p)^k``, truncated at ``max_delay``.

    Examples:
      >>> import decjax
      >>> decjax.algorithms.geometric_delay(0.5, 8).max_delay
      8
    """
    check_in_range("p", p, 0.0, 1.0, closed="right")
    max_delay = check_int("max_delay", max_delay, minimum=0)

    def sample(key, n):
        u = jax.random.uniform(key, (n, n), minval=1e-12)
        k = jnp.floor(jnp.log(u) / jnp.log1p(-p)) if p < 1 else jnp.zeros((n, n))
        return jnp.minimum(k, max_delay).astype(jnp.int32)

    return Delays(f"geometric(p={p:g}, max={max_delay})", sample, max_delay)


def per_link_delay(delays) -> Delays:
    """A fixed delay per link: ``delays[i, j]`` ticks for messages from ``j`` to ``i``.

    Examples:
      >>> import decjax
      >>> decjax.algorithms.per_link_delay([[0, 3], [1, 0]]).max_delay
      3
    """
    matrix = np.asarray(delays)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"delays must be an (n, n) matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.integer) or matrix.min() < 0:
        raise ValueError("delays must be non-negative integers")
    fixed = jnp.asarray(matrix, jnp.int32)

    def sample(key, n):
        if n != fixed.shape[0]:
            raise ValueError(f"per_link_delay is ({fixed.shape[0]}, {fixed.shape[0]}), n={n}")
        return fixed

    return Delays("per_link", sample, int(matrix.max()))


def deliveries(delay_buf: jax.Array, t: jax.Array, buffer: int):
    """Messages sent ``a`` ticks ago whose delay is ``a``: ``(ages, slots, deliver)`` with
    ``deliver`` of shape ``(receivers, age, senders)``."""
    ages = jnp.arange(buffer)
    send_ticks = t - ages
    slots = send_ticks % buffer
    deliver = (delay_buf[:, slots, :] == ages[None, :, None]) & (send_ticks >= 0)[None, :, None]
    return ages, slots, deliver


def incoming(buf: jax.Array, slots: jax.Array, deliver: jax.Array, n: int) -> jax.Array:
    """What each receiver gets this tick from one ring buffer leaf ``(n, buffer, ...)``.

    ``deliver`` is ``(receivers, age, senders)``: a mask (the sum of the messages
    due), or weights (their weighted sum, as push-sum's shares).
    """
    everyone = _axis.gather_rows(buf)[:, slots]  # (senders, age, ...)
    flat = everyone.reshape(n, slots.shape[0], -1)
    mask = deliver.astype(flat.dtype)
    got = jnp.einsum("iaj,jad->id", mask, flat, precision=jax.lax.Precision.HIGHEST)
    return got.reshape(buf.shape[:1] + buf.shape[2:])
