"""Compressors for communication-efficient gossip (Choco-SGD), applied to one worker's vector.

A :class:`Compressor` maps a flat vector ``x`` (one worker's message) and a key
to its compressed reconstruction ``Q(x)``, and says how many bytes the message
costs. All compressors here are contractive in the sense of Koloskova et al.
(2019): ``E||Q(x) - x||^2 <= (1 - omega) ||x||^2`` for some ``omega > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from decjax import _axis
from decjax._validation import check_in_range, check_int


class Compressor(NamedTuple):
    """``compress(key, x) -> Q(x)`` on a flat ``(d,)`` vector; ``bytes(d, itemsize)`` a message."""

    name: str
    compress: Callable[[jax.Array, jax.Array], jax.Array]
    bytes: Callable[[int, int], int]
    check: Callable[[int], None]


def compress_rows(compressor: Compressor, key: jax.Array, rows: jax.Array) -> jax.Array:
    """Every worker's row of an ``(n, d)`` matrix compressed with a key of its own.

    The keys are split for all ``n`` workers, so under a worker axis (a block of
    rows per device) each worker gets the key it gets on one device.
    """
    keys = _axis.local_rows(jax.random.split(key, _axis.total_workers(rows.shape[0])))
    return jax.vmap(compressor.compress)(keys, rows)


def ordered_sum(x: jax.Array) -> jax.Array:
    """Sum of a ``(d,)`` vector by a fixed pairwise tree of elementwise adds.

    ``jnp.sum`` leaves the order of additions to XLA, which picks it by shape:
    the same row summed inside a vmap over 16 workers and over a device's
    block of 2 can differ in the last bit, and a compressor turns that bit
    into a different message (a sign flips, a top-k choice changes). Halving
    with elementwise adds has one order whatever the batch, so compressed
    gossip is bitwise the same on one device and on a mesh (given the same
    inputs). It costs about two passes over ``x`` instead of one.
    """
    size = 1 << max(0, (x.shape[0] - 1).bit_length())
    x = jnp.pad(x, (0, size - x.shape[0]))
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        x = x[:half] + x[half:]
    return x[0]


def _no_check(d: int) -> None:
    del d


def identity() -> Compressor:
    """No compression: ``Q(x) = x``; ``d`` values per message.

    Examples:
      >>> import decjax
      >>> decjax.gossip.identity().bytes(1000, 4)
      4000
    """
    return Compressor("identity", lambda key, x: x, lambda d, size: d * size, _no_check)


def _resolve_k(k, fraction, d):
    return k if k is not None else max(1, math.ceil(fraction * d))


def _check_k_args(k, fraction):
    if (k is None) == (fraction is None):
        raise ValueError("give exactly one of k (an int >= 1) or fraction (in (0, 1])")
    if k is not None:
        check_int("k", k, minimum=1)
    else:
        check_in_range("fraction", fraction, 0.0, 1.0, closed="right")


def _k_check(k):
    def check(d: int) -> None:
        if k is not None and k > d:
            raise ValueError(f"k={k} is larger than the dimension d={d} of a worker's model")

    return check


def top_k(k: int | None = None, *, fraction: float | None = None) -> Compressor:
    """Keep the ``k`` largest-magnitude coordinates (or a ``fraction`` of them).

    With ``fraction``, ``k = ceil(fraction * d)``, at least one coordinate: a
    fraction too small for one coordinate (``1e-9`` of a 40-dimensional model)
    still sends one value and its index per message, never an empty message
    (tested). A message is ``k`` values and ``k`` int32 indices. Contractive
    with ``omega = k / d``.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> decjax.gossip.top_k(2).compress(jax.random.key(0), jnp.array([0.1, -3.0, 2.0])).tolist()
      [0.0, -3.0, 2.0]
    """
    _check_k_args(k, fraction)

    def compress(key, x):
        del key
        kk = _resolve_k(k, fraction, x.shape[0])
        _, idx = jax.lax.top_k(jnp.abs(x), kk)
        return jnp.zeros_like(x).at[idx].set(x[idx])

    def size(d, itemsize):
        return _resolve_k(k, fraction, d) * (itemsize + 4)

    return Compressor("top_k", compress, size, _k_check(k))


def random_k(k: int | None = None, *, fraction: float | None = None) -> Compressor:
    """Keep ``k`` uniformly random coordinates (unscaled, so contractive, ``omega = k / d``).

    With ``fraction``, ``k = ceil(fraction * d)``, at least one coordinate (as :func:`top_k`).

    Sender and receivers share the random seed, so a message is ``k`` values plus a 4-byte seed.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> q = decjax.gossip.random_k(2).compress(jax.random.key(0), jnp.ones(5))
      >>> int((q != 0).sum())
      2
    """
    _check_k_args(k, fraction)

    def compress(key, x):
        kk = _resolve_k(k, fraction, x.shape[0])
        idx = jax.random.choice(key, x.shape[0], (kk,), replace=False)
        return jnp.zeros_like(x).at[idx].set(x[idx])

    def size(d, itemsize):
        return _resolve_k(k, fraction, d) * itemsize + 4

    return Compressor("random_k", compress, size, _k_check(k))


def sign() -> Compressor:
    """Scaled sign: ``Q(x) = (||x||_1 / d) sign(x)``; one bit per coordinate plus the scale.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> decjax.gossip.sign().compress(jax.random.key(0), jnp.array([1.0, -3.0])).tolist()
      [2.0, -2.0]
    """

    def compress(key, x):
        del key
        return ordered_sum(jnp.abs(x)) / x.shape[0] * jnp.sign(x)

    return Compressor("sign", compress, lambda d, size: math.ceil(d / 8) + size, _no_check)


def qsgd(levels: int) -> Compressor:
    r"""QSGD random quantization to ``levels`` levels, rescaled to be contractive.

    .. math::  Q(x) = \frac{\lVert x\rVert}{s\,\tau}\,\mathrm{sign}(x)\,
       \Big\lfloor s\frac{|x|}{\lVert x\rVert} + \xi \Big\rfloor,\quad
       \xi \sim U[0,1),\ \tau = 1 + \min(d/s^2, \sqrt d / s)

    (Alistarh et al. 2017; the ``1/tau`` scaling of Koloskova et al. 2019).
    A message is ``1 + ceil(log2(s + 1))`` bits per coordinate plus the norm.

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> q = decjax.gossip.qsgd(4).compress(jax.random.key(0), jnp.array([3.0, 4.0]))
      >>> q.shape
      (2,)
    """
    levels = check_int("levels", levels, minimum=1)

    def compress(key, x):
        d = x.shape[0]
        tau = 1.0 + min(d / levels**2, math.sqrt(d) / levels)
        norm = jnp.sqrt(ordered_sum(x * x))
        safe = jnp.where(norm > 0, norm, 1.0)
        xi = jax.random.uniform(key, x.shape)
        q = jnp.floor(levels * jnp.abs(x) / safe + xi)
        return jnp.where(norm > 0, safe / (levels * tau) * jnp.sign(x) * q, 0.0)

    def size(d, itemsize):
        bits = 1 + math.ceil(math.log2(levels + 1))
        return math.ceil(d * bits / 8) + itemsize

    return Compressor(f"qsgd{levels}", compress, size, _no_check)
