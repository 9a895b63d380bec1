"""The command line's flags: ``build_parser`` and its groups (faults, the clock)."""

from __future__ import annotations

import argparse
from pathlib import Path

import decjax
from decjax import workloads
from decjax._arguments import (
    HelpFormatter,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
)
from decjax._arguments import (
    seed as seed_type,
)
from decjax.data import SCHEMES

# --cluster presets (illustrative orders of magnitude, not measurements of a machine):
# every worker behind a switch port of (latency in seconds, Gb/s), or nodes of 8 workers
PORTS = {
    "ethernet-1g": (50e-6, 1.0),
    "ethernet-10g": (20e-6, 10.0),
    "infiniband-100g": (2e-6, 100.0),
}


CLUSTERS = {
    **{
        name: f"every worker's port {gb:g} Gb/s, {latency * 1e6:g} us"
        for name, (latency, gb) in PORTS.items()
    },
    "nvlink-nodes": "8 workers per node on 300 GB/s, 2 us links; 100 Gb/s, 10 us between nodes",
}


def _topology_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in decjax.topology.NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown topology {', '.join(unknown) if unknown else repr(text)}; choose from "
            f"{', '.join(decjax.topology.NAMES)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decjax",
        description="Decentralized training of a model on a dataset (digits by default): "
        "one vmapped run per topology, compiled once.",
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add("--workers", type=positive_int, default=16, help="number of workers n")
    add(
        "--topologies",
        type=_topology_list,
        default=["ring", "exponential", "complete", "solo"],
        help=f"comma-separated, from: {', '.join(decjax.topology.NAMES)}",
    )
    add(
        "--peers",
        type=positive_int,
        default=None,
        help="peers per step of base_graph (k), epidemic and random_out (s); offsets of "
        "equi_static (M); default: each topology's own",
    )
    add("--algorithm", choices=decjax.algorithms.NAMES, default="dpsgd", help="optimizer")
    add("--partition", choices=SCHEMES, default="sorted", help="how data is split over workers")
    add(
        "--alpha",
        type=positive_float,
        default=None,
        help="with --partition dirichlet or balanced_dirichlet: the Dirichlet concentration "
        "(default 0.1)",
    )
    add("--model", choices=workloads.MODELS, default="mlp", help="model (sized for the data)")
    add("--dataset", choices=workloads.DATASETS, default="digits", help="training data")
    add("--data-dir", type=Path, default=None, help="folder of cifar*/mnist files")
    add("--data-file", type=Path, default=None, help="the .npz or text file")
    add("--augment", action="store_true", help="random crop and flip per worker (images)")
    _add_optimizer_flags(parser)
    add("--steps", type=positive_int, default=1000, help="training steps")
    add("--batch-size", type=positive_int, default=16, help="minibatch size per worker")
    add("--lr", type=positive_float, default=0.3, help="learning rate")
    add("--eval-every", type=positive_int, default=50, help="steps between records")
    add("--seed", type=seed_type, default=0, help="seed of data, init and sampling")
    add("--out", type=Path, default=Path("decjax-out"), help="output folder")
    add("--no-progress", action="store_true", help="hide the progress bar")
    _add_fault_flags(parser)
    _add_byzantine_flags(parser)
    _add_privacy_flags(parser)
    _add_clock_flags(parser)
    add(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="save the run state there after every chunk and resume from it if present",
    )
    add(
        "--overwrite",
        action="store_true",
        help="with --checkpoint-dir: start afresh over a checkpoint of another run",
    )
    return parser


def _add_optimizer_flags(parser: argparse.ArgumentParser) -> None:
    """The local optimizer's momentum, the parameters' storage and the periodic algorithms'
    H."""
    add = parser.add_argument
    add("--momentum", type=probability, default=0.0, help="local momentum (dpsgd family)")
    add(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="how the parameters are stored; bfloat16: each step in float32, rounded "
        "stochastically (decjax.algorithms.low_precision)",
    )
    add(
        "--every",
        type=positive_int,
        default=None,
        help="local steps between averages (H) of local_sgd, gossip_pga and the DiLoCo "
        "family (default 8)",
    )


def _add_fault_flags(parser: argparse.ArgumentParser) -> None:
    """Asynchrony (DASGD's delays) and faults (links, nodes, stragglers)."""
    faults = parser.add_argument_group("asynchrony and faults").add_argument
    faults(
        "--max-delay",
        type=nonnegative_int,
        default=None,
        help="with --algorithm dasgd: message delays uniform on 0..MAX_DELAY ticks (default 4)",
    )
    faults(
        "--drop-prob",
        type=probability,
        default=0.0,
        help="each link fails independently per step with this probability",
    )
    faults(
        "--node-failure",
        type=probability,
        default=0.0,
        help="probability that a worker is down (for blocks of 20 steps); it rejoins from "
        "its neighbours' average",
    )
    faults(
        "--stragglers",
        type=probability,
        default=0.0,
        help="fraction of workers that run at half speed (they reuse their last gradient)",
    )


def _add_byzantine_flags(parser: argparse.ArgumentParser) -> None:
    """Byzantine workers, their attack and the robust rule (decjax.byzantine)."""
    group = parser.add_argument_group(
        "Byzantine workers (with --algorithm dpsgd; records are the honest workers')"
    ).add_argument
    group(
        "--byzantine",
        type=nonnegative_int,
        default=0,
        help="number of Byzantine workers, drawn uniformly with --seed",
    )
    group(
        "--attack",
        choices=list(decjax.byzantine.ATTACKS),
        default=None,
        help="what they send (default dissensus; alie uses the paper's z_max)",
    )
    group(
        "--robust",
        choices=list(decjax.byzantine.RULES),
        default=None,
        help="the honest workers' combine (default gossip); trimmed_mean trims and krum "
        "tolerates as many as --byzantine (at least 1)",
    )


def _add_privacy_flags(parser: argparse.ArgumentParser) -> None:
    """DP-SGD on every worker (decjax.privacy.Clip)."""
    group = parser.add_argument_group(
        "differential privacy (DP-SGD per worker on Poisson samples; records gain epsilon)"
    ).add_argument
    group(
        "--clip",
        type=positive_float,
        default=None,
        help="C: clip every example's gradient to this norm (turns DP-SGD on)",
    )
    group(
        "--noise-multiplier",
        type=nonnegative_float,
        default=None,
        help="sigma: Gaussian noise of sigma * C / batch per coordinate (default 0)",
    )
    group(
        "--delta",
        type=probability,
        default=None,
        help="the delta at which epsilon is recorded (default 1e-5)",
    )
    group(
        "--epsilon-budget",
        type=positive_float,
        default=None,
        help="stop training where this epsilon is spent",
    )


def _add_clock_flags(parser: argparse.ArgumentParser) -> None:
    """The simulated-time flags (:func:`time_model` reads them)."""
    clock = parser.add_argument_group(
        "simulated time (any of these adds a 'time' record and time to --target-accuracy)"
    ).add_argument
    clock(
        "--bandwidth",
        type=positive_float,
        default=None,
        help="Gb/s of every worker's switch port, shared by the messages it sends",
    )
    clock("--latency", type=nonnegative_float, default=None, help="every link, in seconds")
    clock(
        "--exchange",
        choices=("allreduce", "all_to_all"),
        default=None,
        help="how the complete graph's exact average is sent, for bytes and the clock: a "
        "ring all-reduce (the default) or n - 1 full-model sends per worker",
    )

    clock(
        "--message-scale",
        type=positive_float,
        default=None,
        help="time every message as this many times its bytes (a larger model's messages on "
        "this run's training); needs --bandwidth or --cluster",
    )
    clock(
        "--compute-time",
        type=nonnegative_float,
        default=None,
        help="seconds each worker computes per step (default 0)",
    )
    clock(
        "--cluster",
        choices=tuple(CLUSTERS),
        default=None,
        help="; ".join(f"{k}: {v}" for k, v in CLUSTERS.items()),
    )
    clock(
        "--target-accuracy",
        type=fraction,
        default=None,
        help="with a time flag: the summary's time (and step) to this test accuracy (default 0.8)",
    )
