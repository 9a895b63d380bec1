"""New topologies from old: lazy (slack) mixing."""

from __future__ import annotations

from decjax._validation import check_in_range
from decjax.topology.base import Topology


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
    return topology.slackened(kappa).replace(name=name)
