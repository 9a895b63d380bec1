"""Decentralized algorithms as optax ``GradientTransformationExtraArgs`` over stacked params."""

from decjax.algorithms._chain import chain
from decjax.algorithms._combine import (
    CombineState,
    PerWorker,
    combine,
    decentralize,
    per_worker,
)
from decjax.algorithms._common import (
    DecentralizedTransformation,
    Info,
    StepTransformation,
    apply_step,
    from_step,
    local_then,
)
from decjax.algorithms._consensus_control import (
    ConsensusControlState,
    consensus_control,
    reference_target,
)
from decjax.algorithms._dasgd import DASGDState, dasgd
from decjax.algorithms._detag import DeTAGState, detag
from decjax.algorithms._diloco import (
    diloco,
    gossip_diloco,
    nesterov_outer,
    streaming_diloco,
)
from decjax.algorithms._diloco_rounds import DiLoCoState
from decjax.algorithms._dpsgd import dpsgd
from decjax.algorithms._gradient_tracking import GradientTrackingState, gradient_tracking
from decjax.algorithms._relaysgd import RelaySumState, relaysgd, relaysum
from decjax.algorithms.catalog import ALGORITHMS, NAMES, TREE_ONLY, by_name
from decjax.algorithms.choco import ChocoState, choco_sgd
from decjax.algorithms.delays import (
    Delays,
    fixed_delay,
    geometric_delay,
    per_link_delay,
    uniform_delay,
)
from decjax.algorithms.diffusion import DiffusionState, d2, exact_diffusion
from decjax.algorithms.faults import ChurnState, StragglerState, node_churn, stragglers
from decjax.algorithms.local import gossip_pga, local_sgd
from decjax.algorithms.precision import LowPrecisionState, low_precision, stochastic_round
from decjax.algorithms.push_sum import (
    OverlapState,
    PushDIGingState,
    PushSumState,
    osgp,
    push_diging,
    sgp,
)
from decjax.algorithms.qgm import QuasiGlobalMomentumState, qg_dsgdm

__all__ = [
    "ALGORITHMS",
    "NAMES",
    "TREE_ONLY",
    "ChocoState",
    "ChurnState",
    "CombineState",
    "ConsensusControlState",
    "DASGDState",
    "DeTAGState",
    "DecentralizedTransformation",
    "Delays",
    "DiLoCoState",
    "DiffusionState",
    "GradientTrackingState",
    "Info",
    "LowPrecisionState",
    "OverlapState",
    "PerWorker",
    "PushDIGingState",
    "PushSumState",
    "QuasiGlobalMomentumState",
    "RelaySumState",
    "StepTransformation",
    "StragglerState",
    "apply_step",
    "by_name",
    "chain",
    "choco_sgd",
    "combine",
    "consensus_control",
    "d2",
    "dasgd",
    "decentralize",
    "detag",
    "diloco",
    "dpsgd",
    "exact_diffusion",
    "fixed_delay",
    "from_step",
    "geometric_delay",
    "gossip_diloco",
    "gossip_pga",
    "gradient_tracking",
    "local_sgd",
    "local_then",
    "low_precision",
    "nesterov_outer",
    "node_churn",
    "osgp",
    "per_link_delay",
    "per_worker",
    "push_diging",
    "qg_dsgdm",
    "reference_target",
    "relaysgd",
    "relaysum",
    "sgp",
    "stochastic_round",
    "stragglers",
    "streaming_diloco",
    "uniform_delay",
]
