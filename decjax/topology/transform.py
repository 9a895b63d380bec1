"""New topologies from old: lazy (slack) mixing."""

from __future__ import annotations

import jax.numpy as jnp

from decjax._validation import check_in_range
from decjax.topology._topology import Topology


def lazy(topology: Topology, kappa: float = 0.5) -> Topology:
    r"""The lazy (slack) topology :math:`W_\kappa = \kappa W + (1 - \kappa) I`.

    Same graph, more weight on oneself: the spectrum maps to
    :math:`\kappa\lambda + 1 - \kappa`, so :math:`\kappa = 1/2` makes every
    eigenvalue non-negative (D²'s condition holds) and smaller :math:`\kappa`
    shrinks the spectral gap by :math:`\kappa` (the "slack matrices" of Lu & De
    Sa's experiments). The representation (and so the gossip cost) is kept; on a
    topology with faults, the realized weights are scaled by :math:`\kappa` too.

    Examples:
      >>> import decjax
      >>> w = decjax.topology.lazy(decjax.ring(4), 0.5).matrix()
      >>> [round(v, 4) for v in w[0].tolist()]
      [0.6667, 0.1667, 0.0, 0.1667]
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    check_in_range("kappa", kappa, 0.0, 1.0, closed="right")
    name = f"lazy({topology.name}, {kappa:g})"
    rep, w = topology.representation, topology.weights
    if rep == "average":
        return _like(topology, name, weights=kappa * w)
    if rep == "dense":
        eye = jnp.eye(topology.n, dtype=w.dtype)[None]
        return _like(topology, name, weights=kappa * w + (1 - kappa) * eye)
    self_slot = jnp.full((*w.shape[:-1], 1), 1 - kappa, w.dtype)
    weights = jnp.concatenate([kappa * w, self_slot], axis=-1)
    if rep == "shift":
        offsets = tuple((*offs, 0) for offs in topology.offsets)
        return _like(topology, name, weights=weights, offsets=offsets)
    own = jnp.broadcast_to(jnp.arange(topology.n)[None, :, None], self_slot.shape)
    neighbors = jnp.concatenate([topology.neighbors, own.astype(topology.neighbors.dtype)], -1)
    faults = None if topology.faults is None else topology.faults.scaled(kappa)
    return _like(topology, name, weights=weights, neighbors=neighbors, faults=faults)


def _like(topology: Topology, name: str, **changes) -> Topology:
    fields = {
        "n": topology.n,
        "period": topology.period,
        "name": name,
        "representation": topology.representation,
        "weights": topology.weights,
        "offsets": topology.offsets,
        "neighbors": topology.neighbors,
        "faults": topology.faults,
        "row_stochastic": topology.row_stochastic,
    }
    fields.update(changes)
    return Topology(**fields)
