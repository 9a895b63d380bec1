"""Parameters stored in bfloat16, each step computed in float32 and rounded once.

A memory-bound step moves every parameter several times (the census in
``benchmarks/roofline.py``: five passes over each weight matrix for D-PSGD),
so storing the parameters in bfloat16 halves those bytes and the memory the
parameters take. Rounding each step's result to the nearest
bfloat16 drops every update smaller than half a bfloat16 step of its weight,
and the loss stalls (``benchmarks/results/roofline_cpu.md``).
:func:`low_precision` rounds stochastically instead: up with the probability
of the distance to the value below, so the stored parameters are the float32
result on average.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax._random import varied
from decjax._validation import as_key, check_choice
from decjax.algorithms._common import apply_step, byzantine_of, constructor, from_step

ROUNDINGS = ("stochastic", "nearest")
STORAGE = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}


def stochastic_round(x: jax.Array, bits: jax.Array) -> jax.Array:
    """``x`` (float32) rounded to bfloat16, up with the probability of its distance to the
    bfloat16 below it (in magnitude), using the high 16 bits of ``bits`` (uint32, ``x``'s
    shape): unbiased, ``E[round(x)] = x``.

    Values a bfloat16 holds exactly stay as they are; infinities and NaN are cast
    (adding to their bits could carry into the sign).

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> x = jnp.float32(1 + 2**-9)  # a quarter of the way from 1 to the next bfloat16
      >>> bits = jnp.array([0, 0xBFFF_FFFF, 0xC000_0000], jnp.uint32)
      >>> decjax.algorithms.stochastic_round(jnp.full(3, x), bits).tolist()
      [1.0, 1.0, 1.0078125]
    """
    x = jnp.asarray(x)
    if x.dtype != jnp.float32:
        raise TypeError(f"stochastic_round: x must be float32, got {x.dtype}")
    bits = jnp.asarray(bits)
    if bits.dtype != jnp.uint32 or bits.shape != x.shape:
        raise TypeError(
            f"stochastic_round: bits must be uint32 of x's shape {x.shape}, got "
            f"{bits.dtype}{list(bits.shape)}"
        )
    raw = jax.lax.bitcast_convert_type(x, jnp.uint32)
    up = (raw + (bits >> 16)) & jnp.uint32(0xFFFF_0000)  # low 16 bits gone: exact in bfloat16
    rounded = jax.lax.bitcast_convert_type(up, jnp.float32).astype(jnp.bfloat16)
    return jnp.where(jnp.isfinite(x), rounded, x.astype(jnp.bfloat16))


class LowPrecisionState(NamedTuple):
    """State of :func:`low_precision`."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    inner: Any  # the wrapped algorithm's state, in float32


@constructor
def low_precision(
    tx: optax.GradientTransformation,
    dtype: str = "bfloat16",
    *,
    rounding: str = "stochastic",
    key: jax.Array | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Run ``tx`` on parameters stored in ``dtype``: each step in float32, rounded once.

    At every step the stored parameters and their gradients are widened to
    float32, ``tx`` takes its whole step there (local update, gossip, its own
    state kept in float32), and the new parameters are rounded back to
    ``dtype`` once. ``rounding="stochastic"`` (bfloat16 only) rounds up with
    the probability of the distance to the value below, from random bits drawn
    per worker and step (so the result does not depend on how the workers are
    split over devices); ``"nearest"`` rounds to the nearest value.

    Why: a memory-bound step moves each parameter several times, and bfloat16
    halves those bytes. Rounding to nearest drops every update smaller than
    half a bfloat16 step of its weight; stochastic rounding keeps it on
    average. On digits (D-PSGD, ring, n = 16, 3,000 steps, 5 seeds) nearest
    rounding ends 0.0241 above float32's training loss of 0.0321, stochastic
    rounding 0.0006 above it, with test accuracy unchanged
    (``benchmarks/results/roofline_cpu.md``).

    Args:
      tx: any decentralized transformation (``dpsgd``, ``gradient_tracking``...).
      dtype: the parameters' storage, ``"bfloat16"`` or ``"float16"`` (nearest
        rounding only; its range ends at 65504).
      rounding: ``"stochastic"`` or ``"nearest"``.
      key: ``jax.random.key`` for stochastic rounding (varied by a run's key).

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> tx = decjax.algorithms.low_precision(decjax.dpsgd(0.1, decjax.ring(4)),
      ...                                      key=jax.random.key(0))
      >>> params = jnp.ones((4, 3), jnp.bfloat16)
      >>> new, state = tx.apply(jnp.ones((4, 3), jnp.bfloat16), tx.init(params), params)
      >>> new.dtype
      dtype(bfloat16)
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    check_choice("dtype", dtype, tuple(STORAGE))
    check_choice("rounding", rounding, ROUNDINGS)
    if rounding == "stochastic" and dtype != "bfloat16":
        raise ValueError(
            f"rounding='stochastic' rounds float32 to bfloat16, not {dtype}: use "
            "dtype='bfloat16', or rounding='nearest'"
        )
    if rounding == "stochastic":
        key = as_key("key", key)
    storage = STORAGE[dtype]
    inner_tx, tx = tx, optax.with_extra_args_support(tx)

    def init(params):
        _check_storage(params, storage)
        return LowPrecisionState(jnp.zeros((), jnp.int32), tx.init(_widen(params)))

    def step(grads, state, params, **extra_args):
        _check_storage(params, storage)
        new, inner, info = apply_step(
            inner_tx, _widen(grads), state.inner, _widen(params), **extra_args
        )
        if rounding == "nearest":
            new = jax.tree.map(lambda a: a.astype(storage) if a.dtype == jnp.float32 else a, new)
        else:
            new = _round_stochastically(new, varied(key), state.count)
        return new, LowPrecisionState(state.count + 1, inner), info

    out = from_step(init, step)
    out.byzantine = byzantine_of(inner_tx)
    return out


def _widen(tree):
    return jax.tree.map(
        lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _check_storage(params, storage) -> None:
    wrong = {
        str(leaf.dtype)
        for leaf in jax.tree.leaves(params)
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != storage
    }
    if wrong:
        name = jnp.dtype(storage).name
        raise TypeError(
            f"low_precision: params hold {sorted(wrong)} leaves, not {name}: store them as "
            f"{name} (jax.tree.map(lambda a: a.astype(jnp.{name}), params))"
        )


def _round_stochastically(tree, key, count):
    """Each worker's leaves rounded with bits hashed from two seeds per (step, worker, leaf),
    drawn for all ``n`` workers at once (a few kernels, whatever the number of leaves) and
    sliced to the local ones: any split of the workers draws the same bits."""
    leaves, treedef = jax.tree.flatten(tree)
    n = _axis.total_workers(leaves[0].shape[0])
    seeds = jax.random.bits(jax.random.fold_in(key, count), (n, len(leaves), 2), jnp.uint32)

    def one_worker(seed, *rows):
        return [
            stochastic_round(row, _hashed_bits(seed[i], row.shape))
            if row.dtype == jnp.float32
            else row
            for i, row in enumerate(rows)
        ]

    return jax.tree.unflatten(treedef, jax.vmap(one_worker)(_axis.local_rows(seeds), *leaves))


def _hashed_bits(seeds: jax.Array, shape) -> jax.Array:
    """Random uint32 of ``shape`` from two uint32 ``seeds``: per element a counter-based
    hash of its index (Wellons' lowbias32 twice, about 16 integer operations, fused into
    the rounding), where threefry takes 20 rounds for every two words; rounding asks only
    for bits that are uniform and unrelated across elements, workers and steps (tested)."""
    index = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    return _lowbias32(_lowbias32(index + seeds[0]) ^ seeds[1])


def _lowbias32(x):
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)
