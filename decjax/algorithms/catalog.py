"""Every algorithm by name, as ``factory(learning_rate, topology) -> GradientTransformation``.

Used by the command line and by the conformance tests, which run one battery
over every entry. Defaults follow the papers' experiments where they give them.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from decjax._validation import check_choice
from decjax.algorithms._combine import decentralize
from decjax.algorithms._common import check_learning_rate
from decjax.algorithms._consensus_control import consensus_control
from decjax.algorithms._dasgd import dasgd
from decjax.algorithms._detag import detag
from decjax.algorithms._diloco import diloco, gossip_diloco, streaming_diloco
from decjax.algorithms._dpsgd import dpsgd
from decjax.algorithms._gradient_tracking import gradient_tracking
from decjax.algorithms._relaysgd import relaysgd
from decjax.algorithms.choco import choco_sgd
from decjax.algorithms.delays import uniform_delay
from decjax.algorithms.diffusion import d2, exact_diffusion
from decjax.algorithms.local import gossip_pga, local_sgd
from decjax.algorithms.push_sum import osgp, push_diging, sgp
from decjax.algorithms.qgm import qg_dsgdm
from decjax.gossip import sign, top_k
from decjax.topology import Topology, lazy

Factory = Callable[[float, Topology], optax.GradientTransformation]


def _inner(learning_rate) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum=0.9, nesterov=True)


EVERY = 8  # the periodic algorithms' default H: local steps between averages

# The algorithms that average every H steps, built with any H: ``(lr, topology, every)``.
PERIODIC: dict[str, Callable[[float, Topology, int], optax.GradientTransformation]] = {
    "local_sgd": lambda lr, topology, every: local_sgd(lr, topology.n, every=every),
    "gossip_pga": lambda lr, topology, every: gossip_pga(lr, topology, every=every),
    # the DiLoCo family: Nesterov SGD (momentum 0.9) inside; one fragment, so that it runs
    # on a model of any number of leaves
    "diloco": lambda lr, topology, every: diloco(_inner(lr), every=every),
    "gossip_diloco": lambda lr, topology, every: gossip_diloco(_inner(lr), topology, every=every),
    "streaming_diloco": lambda lr, topology, every: streaming_diloco(
        _inner(lr), every=every, overlap=1, alpha=0.5
    ),
}


ALGORITHMS: dict[str, Factory] = {
    "dpsgd": lambda lr, topology: dpsgd(lr, topology),
    "dpsgd_parallel": lambda lr, topology: dpsgd(lr, topology, order="parallel"),
    "dmsgd": lambda lr, topology: dpsgd(lr, topology, momentum=0.9),
    "adam": lambda lr, topology: decentralize(optax.adam(lr), topology),
    "gradient_tracking": lambda lr, topology: gradient_tracking(lr, topology),
    "gradient_tracking_parallel": lambda lr, topology: gradient_tracking(
        lr, topology, order="parallel"
    ),
    # D² needs lambda_min(W) > -1/3: run it on the lazy graph (I + W) / 2.
    "d2": lambda lr, topology: d2(lr, lazy(topology, 0.5)),
    "exact_diffusion": lambda lr, topology: exact_diffusion(lr, topology),
    "detag": lambda lr, topology: detag(lr, topology, phase_length=2, gossip_momentum=0.2),
    "qg_dsgdm": lambda lr, topology: qg_dsgdm(lr, topology, momentum=0.9),
    "choco_top10": lambda lr, topology: choco_sgd(
        lr, topology, compressor=top_k(fraction=0.1), consensus_step=0.3
    ),
    "choco_sign": lambda lr, topology: choco_sgd(
        lr, topology, compressor=sign(), consensus_step=0.5
    ),
    "local_sgd": lambda lr, topology: PERIODIC["local_sgd"](lr, topology, EVERY),
    "gossip_pga": lambda lr, topology: PERIODIC["gossip_pga"](lr, topology, EVERY),
    "consensus_control": lambda lr, topology: consensus_control(
        optax.sgd(lr), topology, target=1e-3, estimator="exact"
    ),
    "dasgd": lambda lr, topology: dasgd(lr, topology, delays=uniform_delay(4)),
    # the push-sum family also runs on directed (column-stochastic) graphs
    "sgp": lambda lr, topology: sgp(lr, topology, momentum=0.9, nesterov=True),
    "osgp": lambda lr, topology: osgp(lr, topology, overlap=1, momentum=0.9, nesterov=True),
    "push_diging": lambda lr, topology: push_diging(lr, topology),
    # the DiLoCo family: EVERY local steps per outer step
    "diloco": lambda lr, topology: PERIODIC["diloco"](lr, topology, EVERY),
    "gossip_diloco": lambda lr, topology: PERIODIC["gossip_diloco"](lr, topology, EVERY),
    "streaming_diloco": lambda lr, topology: PERIODIC["streaming_diloco"](lr, topology, EVERY),
    # RelaySum over a spanning tree (chain, binary_tree, double_binary_trees): any other
    # graph is refused in one line
    "relaysgd": lambda lr, topology: relaysgd(lr, topology),
}
# the algorithms that run on spanning trees only
TREE_ONLY = ("relaysgd",)


def _validated(factory: Factory) -> Factory:
    """Check the learning rate and topology first, also for entries that wrap plain optax
    (which validates nothing) or use only ``topology.n``."""

    def build(learning_rate, topology):
        check_learning_rate(learning_rate)
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
        return factory(learning_rate, topology)

    return build


ALGORITHMS = {name: _validated(factory) for name, factory in ALGORITHMS.items()}
NAMES = tuple(ALGORITHMS)


def by_name(name: str) -> Factory:
    """The factory ``(learning_rate, topology) -> tx`` registered as ``name``.

    Examples:
      >>> import decjax
      >>> tx = decjax.algorithms.by_name("gradient_tracking")(0.1, decjax.ring(4))
    """
    check_choice("name", name, NAMES)
    return ALGORITHMS[name]
