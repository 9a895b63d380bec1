"""Keeping XLA's CPU compiler from fusing a gossip output into the next gossip's reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def separated(tree, step):
    """``tree`` unchanged, through a ``lax.cond`` that XLA cannot fuse across (on CPU).

    Each of the ``k`` gathers (or rolls) and differences of a gossip reads its
    input; XLA's CPU compiler may fuse the input's producer into every one of
    them, and when that producer is itself a gossip (a tracker mixed again in
    the next step of the same loop iteration: Push-DIGing, parallel gradient
    tracking) the fused loop recomputes it for every read. Materializing the
    input first costs one copy. ``optimization_barrier`` does not stop CPU
    fusion, and a conditional with a constant predicate is inlined; this one's
    predicate ``step > INT_MIN`` is always true but known only at run time (and
    unbatched in a sweep, where the step counter is shared). The other branch is
    never taken. Other backends fuse without recomputing, and get ``tree`` as is.
    """
    if jax.default_backend() != "cpu":
        return tree
    always = jnp.asarray(step) > jnp.iinfo(jnp.int32).min

    def never(t):
        return jax.tree.map(lambda x: -x if jnp.issubdtype(x.dtype, jnp.inexact) else x, t)

    return jax.lax.cond(always, lambda t: t, never, tree)
