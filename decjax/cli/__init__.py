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

import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

import decjax
from decjax import workloads
from decjax.cli.parser import build_parser
from decjax.cli.prepare import (
    IGNORE_TOPOLOGY,
    _prepare,
    allreduce_label,
    check_memory,
    privacy_of,
    time_model,
)

__all__ = ["build_parser", "check_memory", "diverged", "main", "time_model"]

# A run whose training loss exceeds its loss at initialization by this factor has diverged.
BLOW_UP = 1e3


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
        "eval_workers": True,  # the summary shows the mean worker's accuracy
        "progress": not args.no_progress,
        "timing": timing,
        "privacy": privacy_of(args),
    }
    if _one_at_a_time(args, topologies):
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


def _one_at_a_time(args, topologies) -> bool:
    """Whether the topologies run one after another (a compile each), not stacked into one
    vmapped sweep: faulty and random topologies draw new matrices every step, and RelaySGD
    builds its routing tables from each tree."""
    return args.algorithm in decjax.algorithms.TREE_ONLY or any(
        t.unstackable() is not None for t in topologies
    )


def _say_resumed(result, directory) -> None:
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from} (the checkpoint in {directory})")


ZETA2_SAMPLE = 256  # examples of each shard the initial zeta^2 is measured on


def _zeta2_at_init(prepared) -> float | None:
    """zeta^2 (decjax.data.heterogeneity) of the partition at the initial model, on a fixed
    sample of each shard, so a Dirichlet alpha maps to the quantity the theory uses;
    ``None`` for a stateful model (its loss needs a state and a key)."""
    _, _, _, _, data, model, params, _ = prepared
    if workloads.is_stateful(model):
        return None
    one = jax.tree.map(lambda x: x[0], params)
    return float(decjax.data.heterogeneity(model.loss, one, data, sample=ZETA2_SAMPLE))


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
    if args.algorithm in IGNORE_TOPOLOGY:  # an all-reduce, not a graph's gossip
        summary["topology"] = allreduce_label(args)
        summary[["spectral_gap", "effective_neighbors"]] = np.nan
    faulty = any(isinstance(t, decjax.topology.Faulty) for t in topologies)
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
        timed = ["time", f"time_to_{target}", f"steps_to_{target}", "reached_at_first_record"]
        summary[timed[1]] = result.reaches("test_accuracy", args.target_accuracy)
        summary[timed[2]] = result.reaches("test_accuracy", args.target_accuracy, x="step")
        # interpolated between records, except where the first record already had it
        summary[timed[3]] = result.reached_at_first_record("test_accuracy", args.target_accuracy)
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
        *(["epsilon"] if "epsilon" in summary else []),
        *timed,
        *(["diverged"] if summary["diverged"].any() else []),
    ]
    return summary, columns


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _settings(args) -> list[str]:
    """The flags that shape the run beyond the algorithm and rate: momentum, H, faults and
    the clock, as ``name value`` (for the header and the figure's title)."""
    flags = [
        ("momentum", args.momentum),
        ("every", args.every),
        ("link failure", args.drop_prob),
        ("node failure", args.node_failure),
        ("stragglers", args.stragglers),
        ("Byzantine workers", args.byzantine),
        ("bandwidth Gb/s", args.bandwidth),
        ("latency s", args.latency),
        ("compute s", args.compute_time),
        ("message scale", args.message_scale),
        ("clip", args.clip),
        ("noise multiplier", args.noise_multiplier),
        ("delta", args.delta),
        ("epsilon budget", args.epsilon_budget),
    ]
    out = [f"{name} {value:g}" for name, value in flags if value]
    if args.algorithm == "dasgd":
        out.append(f"max delay {4 if args.max_delay is None else args.max_delay}")
    out += [
        f"{name} {value}"
        for name, value in (
            ("cluster", args.cluster),
            ("exchange", args.exchange),
            ("attack", args.attack or ("dissensus" if args.byzantine else None)),
            ("robust", args.robust),
            ("parameters", args.precision if args.precision != "float32" else None),
        )
        if value
    ]
    return out


def _title(args) -> str:
    settings = _settings(args)
    return (
        f"{args.algorithm}, n={args.workers}, lr={args.lr:g}, {args.model} on {args.dataset} "
        f"({args.partition})" + (f"; {', '.join(settings)}" if settings else "")
    )


def _config(args) -> dict:
    import jaxlib
    import optax

    device = jax.devices()[0]
    return {
        "command": ["python", "-m", "decjax", *sys.argv[1:]],
        "flags": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "zeta2_at_init"
        },
        "zeta2_at_init": getattr(args, "zeta2_at_init", None),
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
    fig = result.plot(["train_loss", "consensus_distance", "test_accuracy"], title=_title(args))
    fig.savefig(args.out / "curves.png", dpi=120)
    plt.close(fig)  # a long-lived process (a notebook, a test session) keeps no open figures
    written = ", ".join(str(args.out / f) for f in ("results.csv", "summary.csv", "curves.png"))
    print(f"wrote {written}, {args.out / 'config.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        prepared = _prepare(parser, args)
        settings = "".join(f", {s}" for s in _settings(args))
        print(
            f"decjax {decjax.__version__} on {jax.devices()[0].platform}: "
            f"{_plural(args.workers, 'worker')}, {args.dataset} ({args.partition} partition), "
            f"{args.model}, {args.algorithm} lr={args.lr}{settings}, {args.steps} steps x batch "
            f"{args.batch_size}"
        )
        args.zeta2_at_init = _zeta2_at_init(prepared)
        if args.zeta2_at_init is not None:
            print(
                f"heterogeneity zeta^2 at the initial model: {args.zeta2_at_init:.4g} "
                f"(gradients on up to {ZETA2_SAMPLE} examples of each worker's shard)"
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
    how = (
        "one after another"
        if _one_at_a_time(args, topologies)
        else f"in one compile ({result.traces} trace)"
    )
    print(f"\n{_plural(len(topologies), 'run')} {how} in {elapsed:.1f} s")
    _write(args, result, summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
