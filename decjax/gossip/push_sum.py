"""Push-sum averaging (Kempe, Dobra, Gehrke 2003): exact averages over directed graphs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_int, check_stacked
from decjax.gossip._mix import mix
from decjax.topology import Topology


def debias(numerators: Any, weights: jax.Array) -> Any:
    """``z = x / w`` leaf by leaf (``w`` of shape ``(n,)`` broadcast over trailing axes)."""

    n = check_stacked("numerators", numerators)
    if jnp.shape(weights) != (n,):
        raise ValueError(
            f"weights must hold one push-sum weight per worker, shape ({n},), got "
            f"{jnp.shape(weights)}"
        )

    def ratio(x):
        w = weights.reshape(weights.shape + (1,) * (x.ndim - 1))
        return (x / w).astype(x.dtype)

    return jax.tree.map(ratio, numerators)


def unit_weights(tree: Any) -> jax.Array:
    """Push-sum weights ``w_0 = 1`` for the workers of ``tree``, in its float dtype."""
    leaf = jax.tree.leaves(tree)[0]
    return jnp.ones((jnp.shape(leaf)[0],), jnp.promote_types(jnp.result_type(leaf), jnp.float32))


def push_sum_average(
    topology: Topology,
    tree: Any,
    rounds: int,
    *,
    step: Any = 0,
    backend: str | None = None,
) -> Any:
    r"""``rounds`` rounds of push-sum: :math:`x \leftarrow P x`, :math:`w \leftarrow P w`, then
    :math:`z = x / w`, starting from :math:`x = ` ``tree`` and :math:`w = 1`.

    On a column-stochastic ``P`` (a directed graph, :func:`decjax.topology.from_digraph`)
    plain gossip converges to a *weighted* average :math:`\pi_i n \bar x`; the
    ratio :math:`z` converges to the exact average :math:`\bar x` at every
    worker (tested to 1e-10 in float64). Gossip runs in the mass-conserving
    push form, so :math:`\sum_i x_i` and :math:`\sum_i w_i = n` are kept up to
    rounding.

    Args:
      topology: a connected column-stochastic (or doubly stochastic) topology.
      tree: a pytree of floating leaves with leading worker axis ``n``.
      rounds: number of push-sum rounds (static), ``>= 0``.
      step: the first round's index (time-varying topologies).
      backend: force a gossip backend.

    Examples:
      >>> import jax.numpy as jnp, networkx as nx, decjax
      >>> topo = decjax.topology.from_digraph(nx.DiGraph([(0, 1), (1, 2), (2, 0), (0, 2)]))
      >>> x = jnp.array([3.0, 0.0, 0.0])
      >>> [round(v, 3) for v in decjax.mix(topo, x, rounds=60).tolist()]  # weighted: biased
      [1.0, 0.667, 1.333]
      >>> [round(v, 6) for v in decjax.gossip.push_sum_average(topo, x, 60).tolist()]
      [1.0, 1.0, 1.0]
    """
    rounds = check_int("rounds", rounds, minimum=0)
    if rounds == 0:
        return tree
    x, w = mix(topology, (tree, unit_weights(tree)), step, rounds=rounds, backend=backend)
    return debias(x, w)
