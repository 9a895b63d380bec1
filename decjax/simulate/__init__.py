"""The training loop: scan over steps in compiled chunks, metrics, sweeps."""

from decjax.simulate._compare import compare
from decjax.simulate._program import RunState
from decjax.simulate.api import make_run, replicate, simulate, sweep
from decjax.simulate.options import Checkpointing, Evaluation, Execution
from decjax.simulate.result import SimulationResult

__all__ = [
    "Checkpointing",
    "Evaluation",
    "Execution",
    "RunState",
    "SimulationResult",
    "compare",
    "make_run",
    "replicate",
    "simulate",
    "sweep",
]
