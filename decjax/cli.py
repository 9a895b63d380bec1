"""``python -m decjax``: compare topologies on a real decentralized-training problem.

The default run trains 16 workers on scikit-learn's handwritten digits with a
label-sorted partition (each worker sees one or two classes), with D-PSGD on a
ring, the static exponential graph, the complete graph and no communication,
all in one compiled, vmapped sweep. It prints a results table and writes
``results.csv`` (every recorded step), ``summary.csv``, ``curves.png`` and
``config.json`` (every flag, the versions, the seed and the device).

Every bad flag ends in one line on stderr and exit code 2, before any
training; Ctrl-C prints one line and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

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
from decjax._validation import available_memory
from decjax.data import SCHEMES

# A run whose training loss exceeds its loss at initialization by this factor has diverged.
BLOW_UP = 1e3
# Algorithms that average over all workers whatever the topology: run once.
IGNORE_TOPOLOGY = {
    name: "averages over all workers every 8 steps"
    for name in ("local_sgd", "diloco", "streaming_diloco")
}
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
            f"unknown topology {unknown or text!r}; choose from {', '.join(decjax.topology.NAMES)}"
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
        help="with --partition dirichlet: the Dirichlet concentration (default 0.1)",
    )
    add("--model", choices=workloads.MODELS, default="mlp", help="model (sized for the data)")
    add("--dataset", choices=workloads.DATASETS, default="digits", help="training data")
    add("--data-dir", type=Path, default=None, help="folder of cifar*/mnist files")
    add("--data-file", type=Path, default=None, help="the .npz or text file")
    add("--augment", action="store_true", help="random crop and flip per worker (images)")
    add("--momentum", type=probability, default=0.0, help="local momentum (dpsgd family)")
    add("--steps", type=positive_int, default=1000, help="training steps")
    add("--batch-size", type=positive_int, default=16, help="minibatch size per worker")
    add("--lr", type=positive_float, default=0.3, help="learning rate")
    add("--eval-every", type=positive_int, default=50, help="steps between records")
    add("--seed", type=seed_type, default=0, help="seed of data, init and sampling")
    add("--out", type=Path, default=Path("decjax-out"), help="output folder")
    add("--no-progress", action="store_true", help="hide the progress bar")
    _add_fault_flags(parser)
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


def _check_out(out: Path) -> None:
    """The output folder can be created and written, checked before training."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"--out {out} is not a writable directory ({err.strerror})") from None


def _make_factory(args, key):
    """``topology -> tx`` for the chosen algorithm and fault options.

    The factory closes over the values that shape the run only (not over
    ``args``), so a checkpoint's identity does not change with, say,
    ``--no-progress``.
    """
    lr, algorithm, churn = args.lr, args.algorithm, args.node_failure > 0
    if args.max_delay is not None and algorithm != "dasgd":
        raise ValueError("--max-delay applies to --algorithm dasgd only")
    max_delay = 4 if args.max_delay is None else args.max_delay
    slow = round(args.stragglers * args.workers)
    speeds = [1.0] * (args.workers - slow) + [0.5] * slow
    build = workloads.algorithm(algorithm, args.momentum)

    def factory(topology):
        if algorithm == "dasgd":
            delays = decjax.algorithms.uniform_delay(max_delay)
            return decjax.dasgd(
                lr, topology, delays=delays, speeds=speeds if slow else None, key=key
            )
        tx = build(lr, topology)
        if topology.faults is not None and churn:
            tx = decjax.algorithms.node_churn(tx, topology)
        if slow:
            tx = decjax.algorithms.stragglers(tx, speeds, key=key)
        return tx

    return factory


def time_model(args) -> decjax.timing.TimeModel | None:
    """The run's time model from the --bandwidth, --latency, --compute-time and --cluster
    flags; ``None`` when none is given."""
    timing = decjax.timing
    if args.bandwidth is None and args.latency is None and args.compute_time is None:
        if args.cluster is None:
            return None
    if args.cluster is not None and (args.bandwidth is not None or args.latency is not None):
        raise ValueError(f"--cluster {args.cluster} sets the links; drop --bandwidth and --latency")
    if args.cluster == "nvlink-nodes":
        if args.workers % 8:
            raise ValueError(
                f"--cluster nvlink-nodes needs a multiple of 8 workers, got {args.workers}"
            )
        network = timing.cluster(args.workers // 8, 8)
    elif args.cluster is not None:
        latency, gigabits = PORTS[args.cluster]
        network = timing.Network(latency, timing.gbps(gigabits), timing.gbps(gigabits))
    else:  # every worker behind a switch port of this bandwidth, shared by its messages
        bandwidth = float("inf") if args.bandwidth is None else timing.gbps(args.bandwidth)
        network = timing.Network(args.latency or 0.0, bandwidth, bandwidth)
    return timing.TimeModel(network, compute=args.compute_time or 0.0)


def _topologies(args, key) -> list:
    if args.peers is not None:
        unused = [t for t in args.topologies if t not in decjax.topology.catalog.WITH_PEERS]
        if unused:
            raise ValueError(
                f"--peers applies to {', '.join(decjax.topology.catalog.WITH_PEERS)}; "
                f"not to {', '.join(unused)}"
            )
    topologies = [
        decjax.topology.by_name(
            name, args.workers, key=jax.random.fold_in(key, i), peers=args.peers
        )
        for i, name in enumerate(args.topologies)
    ]
    if args.algorithm in IGNORE_TOPOLOGY and len(topologies) > 1:
        print(
            f"note: {args.algorithm} {IGNORE_TOPOLOGY[args.algorithm]} and ignores the "
            f"topology: one run (on {topologies[0].name}) instead of {len(topologies)} "
            "identical ones"
        )
        topologies = topologies[:1]
    if args.drop_prob > 0 or args.node_failure > 0:
        if args.algorithm == "dasgd":
            raise ValueError(
                "--drop-prob and --node-failure apply to gossip algorithms; DASGD models "
                "unreliable links with --max-delay"
            )
        topologies = [
            decjax.topology.with_faults(
                t,
                key=jax.random.fold_in(key, 3000 + i),
                link_failure=args.drop_prob,
                node_failure=args.node_failure,
                down_steps=20,
            )
            for i, t in enumerate(topologies)
        ]
    return topologies


def _supported(topologies: list, factory, algorithm: str) -> list:
    """The topologies the algorithm accepts (built once, concretely); a note for the others."""
    kept, reasons = [], []
    for topology in topologies:
        try:
            factory(topology)
        except ValueError as err:
            reasons.append(f"{topology.name}: {err}")
            continue
        kept.append(topology)
    if not kept:
        raise ValueError(f"--algorithm {algorithm} runs on none of the topologies ({reasons[0]})")
    for reason in reasons:
        print(f"note: skipping {reason}")
    if algorithm == "d2":
        print("note: d2 runs on the lazy graphs (I + W) / 2, where lambda_min(W) > -1/3 holds")
    return kept


def _check_combinations(args) -> None:
    """Flags that would be ignored in this combination: refused, never silently dropped."""
    if args.alpha is not None and args.partition != "dirichlet":
        raise ValueError(
            f"--alpha applies to --partition dirichlet; --partition {args.partition} would "
            "ignore it"
        )
    if args.overwrite and args.checkpoint_dir is None:
        raise ValueError("--overwrite applies with --checkpoint-dir: there is nothing to overwrite")
    timed = any(
        getattr(args, flag) is not None
        for flag in ("bandwidth", "latency", "compute_time", "cluster")
    )
    if args.target_accuracy is not None and not timed:
        raise ValueError(
            "--target-accuracy reports time to accuracy: give a time flag too (--bandwidth, "
            "--latency, --compute-time or --cluster)"
        )
    if (args.drop_prob > 0 or args.node_failure > 0) and args.algorithm in IGNORE_TOPOLOGY:
        raise ValueError(
            f"--drop-prob and --node-failure fail links of the topology, which --algorithm "
            f"{args.algorithm} ignores ({IGNORE_TOPOLOGY[args.algorithm]})"
        )


COPIES = 6  # the caller's params, the run's copy, gradients, new params, a temporary, momentum


def check_memory(args, model, dataset) -> None:
    """Refuse, before allocating, a run whose workers' params, minibatches and logits alone
    exceed 90 % of the device's memory (:data:`COPIES` copies of the params; the minibatch
    and its logits of every worker; the logits of the test set for every worker)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    per_worker = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    example = int(np.prod(dataset.x_train.shape[1:])) * 4
    # the logits (and their gradient) of every example: classes per label position
    logits = dataset.num_classes * int(np.prod(dataset.y_train.shape[1:])) * 4
    train = args.workers * (COPIES * per_worker + args.batch_size * (example + 3 * logits))
    evaluate = (args.workers + 1) * len(dataset.y_test) * logits  # every worker, the average
    need, have = train + evaluate, 0.9 * available_memory()
    if need > have:
        raise ValueError(
            f"{args.workers} workers need about {need / 2**30:.1f} GiB ({COPIES} copies of "
            f"{per_worker / 2**20:.3g} MiB of params each, minibatches of {args.batch_size} "
            f"examples, the logits of {dataset.num_classes} classes for them and the test set) "
            f"but the device has {have / 2**30:.1f} GiB to spare: lower --workers or "
            "--batch-size, or use a smaller model"
        )


def _prepare(parser, args):
    """Everything a run needs, validated; every bad combination exits 2 with one line."""
    if args.steps % args.eval_every:
        parser.error(
            f"--steps ({args.steps}) must be a multiple of --eval-every ({args.eval_every})"
        )
    try:
        _check_combinations(args)
    except ValueError as err:
        parser.error(str(err))
    if args.partition == "dirichlet" and args.alpha is None:
        args.alpha = 0.1
    if args.target_accuracy is None:
        args.target_accuracy = 0.8
    key = jax.random.key(args.seed)
    try:
        _check_out(args.out)
        if args.dataset == "text" and args.partition != "iid":
            raise ValueError("--dataset text needs --partition iid (its labels are sequences)")
        dataset = workloads.dataset(
            args.dataset, seed=args.seed, data_dir=args.data_dir, data_file=args.data_file
        )
        model = workloads.model(args.model, dataset, dataset_name=args.dataset)
        check_memory(args, model, dataset)
        if args.augment and dataset.x_train.ndim != 4:
            raise ValueError(f"--augment needs images; --dataset {args.dataset} has none")
        timing = time_model(args)
        factory = _make_factory(args, jax.random.fold_in(key, 4000))
        topologies = _supported(_topologies(args, key), factory, args.algorithm)
        data = decjax.data.distribute(
            dataset,
            args.workers,
            args.partition,
            key=args.seed,
            alpha=args.alpha if args.partition == "dirichlet" else None,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    params = decjax.replicate(model.init(jax.random.fold_in(key, 1000)), args.workers)
    return key, dataset, factory, topologies, data, model, params, timing


def _loss_and_state(args, model, params):
    """The loss simulate runs, the stacked params and the model state (``None``: stateless)."""
    if workloads.is_stateful(model):
        params, state = params
        loss = decjax.data.augmented(model.loss, stateful=True) if args.augment else model.loss
        return loss, params, state
    if args.augment:
        return decjax.data.augmented(model.loss), params, {}
    return model.loss, params, None


def _train(args, key, dataset, factory, topologies, data, model, params, timing):
    loss, params, model_state = _loss_and_state(args, model, params)
    common = {
        "model_state": model_state,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "eval_every": args.eval_every,
        "key": jax.random.fold_in(key, 2000),
        "eval_fn": model.eval_fn,
        "eval_data": (dataset.x_test, dataset.y_test),
        "progress": not args.no_progress,
        "timing": timing,
    }
    if any(t.faults is not None or t.random for t in topologies):
        # Faulty and random topologies draw new matrices every step: they cannot be
        # stacked into one vmapped sweep, so each runs on its own (one compile each).
        runs = [
            decjax.simulate(
                loss,
                params,
                factory(t),
                data,
                on_divergence="stop",
                checkpoint_dir=None
                if args.checkpoint_dir is None
                else args.checkpoint_dir / t.name,
                overwrite=args.overwrite,
                **common,
            )
            for t in topologies
        ]
        for t, run in zip(topologies, runs, strict=True):
            _say_resumed(run, args.checkpoint_dir and args.checkpoint_dir / t.name)
        return decjax.SimulationResult.concat(runs, [{"topology": t.name} for t in topologies])
    result = decjax.sweep(
        loss,
        params,
        factory,
        data,
        {"topology": topologies},
        checkpoint_dir=args.checkpoint_dir,
        overwrite=args.overwrite,
        **common,
    )
    _say_resumed(result, args.checkpoint_dir)
    return result


def _say_resumed(result, directory) -> None:
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from} (the checkpoint in {directory})")


def _initial_loss(model, params, dataset) -> float:
    """The loss of the initial model on (up to 5,000 of) the training examples."""
    one = jax.tree.map(lambda x: x[0], params)
    batch = (dataset.x_train[:5000], dataset.y_train[:5000])
    if workloads.is_stateful(model):
        first_params, first_state = one
        return float(model.loss(first_params, batch, first_state, jax.random.key(0))[0])
    return float(model.loss(one, batch))


def diverged(result, initial_loss: float) -> np.ndarray:
    """Per run: a non-finite metric, or a training loss above ``BLOW_UP`` x the initial loss."""
    flags = np.atleast_1d(np.asarray(result.diverged, dtype=bool)).copy()
    for values in result.metrics.values():
        flags |= ~np.isfinite(np.atleast_2d(values)).all(axis=-1)
    loss = np.atleast_2d(result.metrics["train_loss"])
    with np.errstate(invalid="ignore", over="ignore"):
        flags |= (np.abs(loss) > BLOW_UP * abs(initial_loss)).any(axis=-1)
    return flags


def _summarize(args, result, topologies, initial_loss):
    summary = result.to_dataframe().groupby("topology", sort=False).last().reset_index()
    summary.insert(1, "spectral_gap", [decjax.spectral_gap(t) for t in topologies])
    summary.insert(
        2,
        "effective_neighbors",  # not defined for push-sum graphs (numerators over weights)
        [decjax.effective_neighbors(t, 0.9) if t.row_stochastic else np.nan for t in topologies],
    )
    faulty = any(t.faults is not None for t in topologies)
    if faulty:
        stats = [
            decjax.topology.fault_statistics(t, range(min(args.steps, 200))) for t in topologies
        ]
        summary.insert(2, "effective_gap_with_faults", [s["effective_spectral_gap"] for s in stats])
        summary.insert(3, "links_lost", [s["fraction_links_lost"] for s in stats])
    summary["diverged"] = diverged(result, initial_loss)
    timed = []
    if "time" in result.metrics:
        target = f"{args.target_accuracy:.0%}"
        timed = ["time", f"time_to_{target}", f"steps_to_{target}"]
        summary[timed[1]] = result.reaches("test_accuracy", args.target_accuracy)
        summary[timed[2]] = result.reaches("test_accuracy", args.target_accuracy, x="step")
    columns = [
        "topology",
        "spectral_gap",
        *(["effective_gap_with_faults", "links_lost"] if faulty else []),
        "effective_neighbors",
        "test_accuracy",
        "worker_test_accuracy",
        "consensus_distance",
        *(["staleness_avg"] if "staleness_avg" in summary else []),
        "train_loss",
        *timed,
        *(["diverged"] if summary["diverged"].any() else []),
    ]
    return summary, columns


def _title(args) -> str:
    faults = [
        f"{name} {value:g}"
        for name, value in (
            ("link failure", args.drop_prob),
            ("node failure", args.node_failure),
            ("stragglers", args.stragglers),
        )
        if value
    ]
    if args.algorithm == "dasgd":
        faults.append(f"max delay {4 if args.max_delay is None else args.max_delay}")
    return (
        f"{args.algorithm}, n={args.workers}, lr={args.lr:g}, {args.model} on {args.dataset} "
        f"({args.partition})" + (f"; {', '.join(faults)}" if faults else "")
    )


def _config(args) -> dict:
    import jaxlib
    import optax

    device = jax.devices()[0]
    return {
        "command": ["python", "-m", "decjax", *sys.argv[1:]],
        "flags": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seed": args.seed,
        "versions": {
            "decjax": decjax.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": {"platform": device.platform, "kind": device.device_kind},
        "devices": jax.device_count(),
    }


def _write(args, result, summary) -> None:
    import matplotlib.pyplot as plt

    result.to_dataframe().to_csv(args.out / "results.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    (args.out / "config.json").write_text(json.dumps(_config(args), indent=2) + "\n")
    fig = result.plot(["train_loss", "consensus_distance", "test_accuracy"])
    fig.suptitle(_title(args), fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    plt.close(fig)  # a long-lived process (a notebook, a test session) keeps no open figures
    written = ", ".join(str(args.out / f) for f in ("results.csv", "summary.csv", "curves.png"))
    print(f"wrote {written}, {args.out / 'config.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        prepared = _prepare(parser, args)
        print(
            f"decjax {decjax.__version__} on {jax.devices()[0].platform}: {args.workers} "
            f"workers, {args.dataset} ({args.partition} partition), {args.model}, {args.algorithm} "
            f"lr={args.lr}, {args.steps} steps x batch {args.batch_size}"
        )
        start = time.perf_counter()
        try:
            result = _train(args, *prepared)
        except ValueError as err:  # refused before training, e.g. another run's checkpoint
            parser.error(str(err).replace("overwrite=True", "--overwrite"))
        elapsed = time.perf_counter() - start
    except KeyboardInterrupt as stop:
        print(f"decjax: {stop or 'interrupted'}", file=sys.stderr)
        return 130
    _, dataset, _, topologies, _, model, params, _ = prepared
    initial_loss = _initial_loss(model, params, dataset)
    summary, columns = _summarize(args, result, topologies, initial_loss)
    print()
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if summary["diverged"].any():
        print(
            f"\ndiverged (a non-finite metric, or a training loss above {BLOW_UP:g} x the "
            f"initial {initial_loss:.3g}): "
            f"{', '.join(summary['topology'][summary['diverged']])}; lower --lr"
        )
    faulty = any(t.faults is not None for t in topologies)
    how = "one after another" if faulty else f"in one compile ({result.traces} trace)"
    print(f"\n{len(topologies)} runs {how} in {elapsed:.1f} s")
    _write(args, result, summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
