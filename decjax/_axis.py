"""The worker axis as a named axis: one code path for one device, ``vmap`` and ``shard_map``.

Outside any context, every per-worker array holds all ``n`` workers on axis 0
and the helpers below are plain array operations. Inside
:func:`worker_axis` (entered by decjax's sharded simulation around the body
of a ``jax.shard_map``, or by hand around ``jax.vmap(..., axis_name=...)``),
each member of the named axis holds a contiguous block of ``b = n / size``
workers, and the helpers use collectives: ``ppermute`` for shifts,
``all_gather`` for arbitrary neighbours, ``psum`` for reductions.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from decjax import _platform

_LOCAL = threading.local()


class WorkerAxis(NamedTuple):
    name: str  # the named axis (a mesh axis under shard_map, a vmap axis name)
    size: int  # number of members along the axis (devices, or vmapped blocks)
    n: int  # total number of workers

    @property
    def block(self) -> int:
        return self.n // self.size


@contextlib.contextmanager
def worker_axis(name: str, size: int, n: int):
    """Trace the enclosed code with ``n`` workers split in blocks over the named axis."""
    if n % size:
        raise ValueError(f"n={n} workers must be a multiple of the axis size {size}")
    stack = getattr(_LOCAL, "stack", [])
    _LOCAL.stack = [*stack, WorkerAxis(name, size, n)]
    try:
        yield
    finally:
        _LOCAL.stack = stack


def current() -> WorkerAxis | None:
    stack = getattr(_LOCAL, "stack", [])
    return stack[-1] if stack else None


def local_size(n: int) -> int:
    """Rows of a per-worker array as seen by this code (``n``, or the block size)."""
    axis = current()
    return n if axis is None else axis.block


def total_workers(local: int) -> int:
    axis = current()
    return local if axis is None else axis.n


def offset() -> jax.Array | int:
    """Global index of the first local worker."""
    axis = current()
    return 0 if axis is None else jax.lax.axis_index(axis.name) * axis.block


def local_rows(full: jax.Array) -> jax.Array:
    """The local block of rows of an array that holds all ``n`` workers (replicated)."""
    axis = current()
    if axis is None:
        return full
    return jax.lax.dynamic_slice_in_dim(full, offset(), axis.block, axis=0)


def gather_rows(x: jax.Array) -> jax.Array:
    """All ``n`` workers' rows, gathered from every member (identity without an axis)."""
    axis = current()
    if axis is None:
        return x
    return jax.lax.all_gather(x, axis.name, axis=0, tiled=True)


def flatten_rows(tree) -> tuple[jax.Array, Any]:
    """``(n, d)`` matrix of each worker's flattened tree, and the inverse map."""
    one = jax.tree.map(lambda x: x[0], tree)
    _, unravel = ravel_pytree(one)
    flat = jax.vmap(lambda t: ravel_pytree(t)[0])(tree)
    return flat, jax.vmap(unravel)


def sum_rows(x: jax.Array) -> jax.Array:
    """``jnp.sum(x, axis=0)``; under the CPU lowering, a float32/float64 sum as a dot with ones.

    XLA:CPU (jaxlib 0.10) wraps a reduction over the leading axis in a fusion
    that runs 40 to 60 times slower than the same sum as a matrix product (64
    workers x 200,704 floats: 68 ms against 1.1 ms); every sum over the
    workers goes through here (the complete graph, periodic averaging,
    consensus distance, averaged evaluation). In ``simulate``'s program the
    complete graph's step at n = 64 costs 5.3 times a hand-written step with
    the reduction and 0.91 times with the dot
    (``benchmarks/results/simulate_step_cpu.md``). The dot adds in another
    order: results agree to float rounding, not bitwise. Integers, booleans
    and half precision keep the sum.
    """
    if x.ndim and x.dtype in (jnp.float32, jnp.float64) and _platform.cpu_lowering():
        ones = jnp.ones(x.shape[0], x.dtype)
        return jnp.tensordot(ones, x, axes=1, precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(x, axis=0)


def sum_workers(x: jax.Array) -> jax.Array:
    """Sum over all workers (axis 0 of the local block, then across members)."""
    local = sum_rows(x)
    axis = current()
    return local if axis is None else jax.lax.psum(local, axis.name)


def mean_workers(x: jax.Array) -> jax.Array:
    return sum_workers(x) / total_workers(x.shape[0])


def max_workers(x: jax.Array) -> jax.Array:
    local = jnp.max(x, axis=0)
    axis = current()
    return local if axis is None else jax.lax.pmax(local, axis.name)


def roll_rows(x: jax.Array, shift: int) -> jax.Array:
    """Local rows of ``x_global[(i + shift) mod n]``, i.e. of ``jnp.roll(x_global, -shift, 0)``.

    With blocks of ``b`` rows over ``size`` members, ``shift = q b + r``: the
    block comes from members ``d + q`` and ``d + q + 1`` — two ``ppermute``-s
    (one when ``r = 0``, none when the shift stays on the member).
    """
    axis = current()
    if axis is None:
        return jnp.roll(x, -shift, axis=0)
    b, size = axis.block, axis.size
    q, r = divmod(shift % axis.n, b)

    def from_member(k):
        k %= size
        if k == 0:
            return x
        perm = [((d + k) % size, d) for d in range(size)]  # (source, destination)
        return jax.lax.ppermute(x, axis.name, perm)

    if r == 0:
        return from_member(q)
    return jnp.concatenate([from_member(q)[r:], from_member(q + 1)[:r]], axis=0)
