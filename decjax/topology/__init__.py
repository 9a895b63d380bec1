"""Communication graphs and their mixing matrices (``W[i, j]``: weight ``i`` puts on ``j``)."""

from decjax.topology import kinds, spectrum
from decjax.topology._epidemic import epidemic, random_out
from decjax.topology.analysis import effective_neighbors, period_product, spectral_gap
from decjax.topology.base import Topology
from decjax.topology.catalog import NAMES, by_name
from decjax.topology.circulant import (
    complete,
    exponential,
    from_offsets,
    one_peer_exponential,
    periodic_average,
    ring,
    solo,
)
from decjax.topology.directed import (
    directed_exponential,
    directed_ring,
    from_digraph,
    one_peer_directed_exponential,
)
from decjax.topology.equitopo import equi_dyn, equi_static, ou_equi_dyn
from decjax.topology.faults import (
    FaultModel,
    Faulty,
    fault_statistics,
    realized_matrices,
    with_faults,
)
from decjax.topology.finite_time import base_graph
from decjax.topology.graphs import (
    erdos_renyi,
    from_edges,
    from_matrix,
    from_neighbor_lists,
    grid,
    hypercube,
    random_matching,
    star,
    torus,
)
from decjax.topology.interop import from_networkx, to_networkx
from decjax.topology.kinds import backends_for, representations
from decjax.topology.optimal import fastest_mixing
from decjax.topology.stacking import stack
from decjax.topology.transform import lazy
from decjax.topology.trees import (
    binary_tree,
    chain,
    double_binary_trees,
    spanning_tree,
    tree_edges,
)

__all__ = [
    "NAMES",
    "FaultModel",
    "Faulty",
    "Topology",
    "backends_for",
    "base_graph",
    "binary_tree",
    "by_name",
    "chain",
    "complete",
    "directed_exponential",
    "directed_ring",
    "double_binary_trees",
    "effective_neighbors",
    "epidemic",
    "equi_dyn",
    "equi_static",
    "erdos_renyi",
    "exponential",
    "fastest_mixing",
    "fault_statistics",
    "from_digraph",
    "from_edges",
    "from_matrix",
    "from_neighbor_lists",
    "from_networkx",
    "from_offsets",
    "grid",
    "hypercube",
    "kinds",
    "lazy",
    "one_peer_directed_exponential",
    "one_peer_exponential",
    "ou_equi_dyn",
    "period_product",
    "periodic_average",
    "random_matching",
    "random_out",
    "realized_matrices",
    "representations",
    "ring",
    "solo",
    "spanning_tree",
    "spectral_gap",
    "spectrum",
    "stack",
    "star",
    "to_networkx",
    "torus",
    "tree_edges",
    "with_faults",
]
