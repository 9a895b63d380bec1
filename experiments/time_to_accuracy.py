"""Time to accuracy: when the ranking by steps and the ranking by simulated seconds disagree.

16 workers train the 1-D CNN on MNIST-1D (IID shards, batch 16 per worker) with
D-PSGD and local momentum 0.9 on the ring, the static exponential graph, the
one-peer exponential graph and the complete graph, and with DiLoCo (H inner
steps of Nesterov SGD, then the outer Nesterov step, momentum 0.9), 10 seeds.
The complete graph's exact average is timed as a ring all-reduce (the
``Average`` kind's default exchange: what synchronous all-reduce SGD does), as
DiLoCo's is. Every run carries two simulated clocks (``decjax.timing``), in the
same compiled sweep:

* messages the size of a ResNet-18 (11.7 M float32 values, 46.8 MB: the 1-D
  CNN is trained, the clock times the messages of the model the field trains),
  a compute time of 50 ms per step (an assumption, not a measurement);
* every worker behind one switch port, shared by all it sends, at 1 Gb/s
  (50 us latency) or 100 Gb/s (2 us).

Tuning on seeds 0-4, reporting on the held-out seeds 5-9: each D-PSGD graph's
learning rate is the one with the fewest mean steps to the tuning target (its
seconds are proportional to its steps); DiLoCo's inner rate x H x outer rate is
tuned by mean simulated seconds to the target, at each bandwidth separately; the
run fails if a chosen rate is at an edge of its grid. Reported on the held-out
seeds: steps and seconds to several targets of the averaged model's test
accuracy (mean, t-based 95 % interval), each method's rank by steps and by
seconds at each bandwidth, and each method's seconds per step checked against
the closed form. The seeds vary the minibatches; the shards and the initial
model are the same in every run. Quick mode: 8 workers, 2 + 2 seeds, 4 rates,
120 steps.

    python experiments/time_to_accuracy.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import _training
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd

import decjax
from decjax import timing

RESNET18_BYTES = 11_689_512 * 4
COMPUTE = 0.05  # seconds per step: an assumption
NETWORKS = {"1g": (50e-6, 1.0), "100g": (2e-6, 100.0)}  # latency (s), port (Gb/s)
GRAPHS = ("ring", "exponential", "one_peer_exponential", "complete")


def clocks(model_bytes: int) -> dict:
    """The two simulated clocks, timing ResNet-18-sized messages."""
    scale = RESNET18_BYTES / model_bytes
    return {
        label: timing.TimeModel(
            timing.Network(latency, timing.gbps(gb), port_bandwidth=timing.gbps(gb)),
            compute=COMPUTE,
            message_scale=scale,
        )
        for label, (latency, gb) in NETWORKS.items()
    }


def allreduce_seconds(label: str, n: int) -> float:
    """A ring all-reduce of the ResNet-18 through the ports: ``2 (n - 1) (l + B / (n p))``."""
    latency, gb = NETWORKS[label]
    return 2 * (n - 1) * (latency + RESNET18_BYTES / n / timing.gbps(gb))


def closed_form(method: str, label: str, n: int, every: int = 1) -> float:
    """Mean seconds per step of ``method`` on clock ``label`` (what the model should give):
    ``k`` messages per worker through its port, or a ring all-reduce every ``every`` steps
    (DiLoCo; the complete graph every step)."""
    latency, gb = NETWORKS[label]
    if method == "diloco":
        return COMPUTE + allreduce_seconds(label, n) / every
    if method == "complete":
        return COMPUTE + allreduce_seconds(label, n)
    messages = float(decjax.gossip.messages_per_worker(decjax.topology.by_name(method, n)))
    return COMPUTE + latency + messages * RESNET18_BYTES / timing.gbps(gb)


def _plan(quick: bool) -> dict:
    if quick:
        return {
            "n": 8,
            "samples": 4_000,
            "steps": 120,
            "tune_seeds": [0, 1],
            "report_seeds": [2, 3],
            "grid": [2.0**-4, 2.0**-3, 2.0**-2, 2.0**-1],  # D-PSGD
            "diloco_grid": [2.0**-5, 2.0**-4, 2.0**-3],
            "diloco_every": [4, 8],
            "diloco_outer": [0.7],
            "evaluations": 15,
            "targets": [0.5, 0.55],
        }
    return {
        "n": 16,
        "samples": 8_000,
        "steps": 400,
        "tune_seeds": [0, 1, 2, 3, 4],
        "report_seeds": [5, 6, 7, 8, 9],
        "grid": [2.0**-6, 2.0**-5, 2.0**-4, 2.0**-3, 2.0**-2, 2.0**-1],
        "diloco_grid": [2.0**-6, 2.0**-5, 2.0**-4, 2.0**-3],
        "diloco_every": [4, 8, 16],
        "diloco_outer": [0.7, 1.0],
        "evaluations": 40,
        "targets": [0.75, 0.8, 0.85],
    }


def training(plan: dict) -> pd.DataFrame:
    """Every run: columns ``method, lr, every, outer_lr, seed, step, ...`` with the clocks."""
    n = plan["n"]
    ds, model = _training.mnist1d(plan["samples"])
    model_bytes = decjax.gossip.worker_bytes(decjax.replicate(model.init(jax.random.key(0)), n))
    seeds = len(plan["tune_seeds"]) + len(plan["report_seeds"])
    common = {
        "steps": plan["steps"],
        "seeds": seeds,
        "evaluations": plan["evaluations"],
        "timing": clocks(model_bytes),
    }
    graphs = [decjax.topology.by_name(name, n) for name in GRAPHS]
    print(f"D-PSGD: {len(plan['grid'])} rates x 4 graphs x {seeds} seeds", flush=True)
    dpsgd = _training.topology_sweep(ds, model, n, graphs, plan["grid"], **common)
    frames = [dpsgd.assign(every=1, outer_lr=np.nan)]
    for every in plan["diloco_every"]:
        for outer_lr in plan["diloco_outer"]:
            print(
                f"DiLoCo H={every}, outer {outer_lr}: {len(plan['diloco_grid'])} rates", flush=True
            )

            def make_diloco(lr, topology, every=every, outer_lr=outer_lr):
                del topology  # an all-reduce
                inner = optax.sgd(lr, momentum=0.9, nesterov=True)
                return decjax.diloco(inner, every, outer=decjax.algorithms.nesterov_outer(outer_lr))

            runs = _training.topology_sweep(
                ds, model, n, [decjax.complete(n)], plan["diloco_grid"], make=make_diloco, **common
            )
            frames.append(runs.assign(topology="diloco", every=every, outer_lr=outer_lr))
    curves = pd.concat(frames, ignore_index=True).rename(columns={"topology": "method"})
    curves["split"] = np.where(curves["seed"].isin(plan["tune_seeds"]), "tune", "report")
    return curves


def reach(runs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per configuration and seed: the first step and simulated seconds with test accuracy
    >= target (NaN when never)."""
    keys = ["method", "lr", "every", "outer_lr", "seed"]
    rows = []
    for key, run in runs.groupby(keys, sort=False, dropna=False):
        run = run.sort_values("step")
        hit = run[run["test_accuracy"] >= target]
        first = hit.iloc[0] if len(hit) else None
        row = dict(zip(keys, key, strict=True), target=target)
        row["step"] = np.nan if first is None else first["step"]
        for label in NETWORKS:
            row[f"seconds_{label}"] = np.nan if first is None else first[f"time_{label}"]
        rows.append(row)
    return pd.DataFrame(rows)


def tune(curves: pd.DataFrame, plan: dict, target: float) -> dict:
    """On the tuning seeds: per D-PSGD graph the rate with the fewest mean steps to
    ``target`` (interior, else exit); DiLoCo's configuration with the fewest mean seconds
    at each bandwidth. Returns ``{(method, clock): (lr, every, outer_lr)}``."""
    reached = reach(curves[curves["split"] == "tune"], target)
    never = np.inf
    chosen = {}
    for method in GRAPHS:
        rows = reached[reached["method"] == method]
        steps = rows.groupby("lr")["step"].apply(lambda s: s.mean() if s.notna().all() else never)
        steps = steps.reindex(plan["grid"])
        best = plan["grid"][_common.best_interior(plan["grid"], steps, f"{method}")]
        for label in NETWORKS:
            chosen[(method, label)] = (best, 1, np.nan)
    rows = reached[reached["method"] == "diloco"]
    for label in NETWORKS:
        seconds = rows.groupby(["lr", "every", "outer_lr"])[f"seconds_{label}"].apply(
            lambda s: s.mean() if s.notna().all() else never
        )
        lr, every, outer_lr = seconds.idxmin()
        rates = seconds.xs((every, outer_lr), level=["every", "outer_lr"])
        scores = rates.reindex(plan["diloco_grid"]).to_numpy()
        _common.best_interior(plan["diloco_grid"], scores, f"DiLoCo H={every}, outer {outer_lr}")
        chosen[("diloco", label)] = (lr, every, outer_lr)
    return chosen


def summary(curves: pd.DataFrame, chosen: dict, plan: dict) -> pd.DataFrame:
    """On the held-out seeds: each method's tuned configuration, per target and clock."""
    held_out = curves[curves["split"] == "report"]
    seeds = len(plan["report_seeds"])
    rows = []
    for (method, label), (lr, every, outer_lr) in chosen.items():
        runs = held_out[
            (held_out["method"] == method)
            & (held_out["lr"] == lr)
            & (held_out["every"] == every)
            & (held_out["outer_lr"].fillna(-1) == (-1 if np.isnan(outer_lr) else outer_lr))
        ]
        last = runs[runs["step"] == runs["step"].max()]
        per_step = last[f"time_{label}"].mean() / last["step"].max()
        for target in plan["targets"]:
            hit = reach(runs, target)
            rows.append(
                {
                    "method": method,
                    "clock": label,
                    "lr": lr,
                    "every": every,
                    "outer_lr": outer_lr,
                    "target": target,
                    "seeds_reaching": int(hit["step"].count()),
                    "steps_mean": hit["step"].mean(),
                    "steps_ci95": _common.t_half_width(hit["step"]),
                    "seconds_mean": hit[f"seconds_{label}"].mean(),
                    "seconds_ci95": _common.t_half_width(hit[f"seconds_{label}"]),
                    "final_test_accuracy": last["test_accuracy"].mean(),
                    "seconds_per_step": per_step,
                    "closed_form_per_step": closed_form(method, label, plan["n"], int(every)),
                }
            )
    table = pd.DataFrame(rows)
    everyone = table["seeds_reaching"] == seeds
    group = table.assign(steps=table["steps_mean"].where(everyone)).groupby(["clock", "target"])
    table["rank_by_steps"] = group["steps"].rank(method="min")
    seconds = table.assign(seconds=table["seconds_mean"].where(everyone))
    table["rank_by_seconds"] = seconds.groupby(["clock", "target"])["seconds"].rank(method="min")
    return table


def figure(curves: pd.DataFrame, chosen: dict, plan: dict):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    held_out = curves[curves["split"] == "report"]
    for column, label in enumerate([None, *NETWORKS]):
        ax = axes[column]
        for method in (*GRAPHS, "diloco"):
            lr, every, outer_lr = chosen[(method, label or "1g")]
            rows = held_out[
                (held_out["method"] == method)
                & (held_out["lr"] == lr)
                & (held_out["every"] == every)
                & (held_out["outer_lr"].fillna(-1) == (-1 if np.isnan(outer_lr) else outer_lr))
            ]
            x = "step" if label is None else f"time_{label}"
            s = rows.groupby("step").agg(
                acc=("test_accuracy", "mean"), std=("test_accuracy", "std"), x=(x, "mean")
            )
            name = (
                f"{method} (lr {lr:g})"
                if method != "diloco"
                else f"DiLoCo (lr {lr:g}, H {every}, outer {outer_lr:g})"
            )
            _common.band_plot(ax, s["x"], s["acc"], s["std"].fillna(0), name)
        for target in plan["targets"]:
            ax.axhline(target, color="k", lw=0.6, ls=":")
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel(
            "steps" if label is None else f"simulated seconds, {NETWORKS[label][1]:g} Gb/s ports"
        )
        ax.grid(alpha=0.3)
        if label is not None:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test accuracy of the averaged model")
    fig.suptitle(
        f"Time to accuracy: 1-D CNN on MNIST-1D, n = {plan['n']}, timed as ResNet-18 messages "
        f"and {COMPUTE * 1e3:g} ms steps (held-out seeds {plan['report_seeds']}, +-1 std; "
        "the complete graph and DiLoCo all-reduce)"
    )
    fig.tight_layout()
    return fig


def grid_table(curves: pd.DataFrame, plan: dict) -> pd.DataFrame:
    """Every configuration on the tuning seeds: mean steps and seconds to the tuning target
    (NaN where a seed never reaches it) and the mean final test accuracy."""
    target = plan["targets"][0]
    tuning = curves[curves["split"] == "tune"]
    hit = reach(tuning, target)
    keys = ["method", "lr", "every", "outer_lr"]
    never = lambda s: s.mean() if s.notna().all() else np.nan  # noqa: E731
    table = hit.groupby(keys, sort=False, dropna=False).agg(
        steps_to_target=("step", never),
        **{f"seconds_{label}": (f"seconds_{label}", never) for label in NETWORKS},
    )
    last = tuning[tuning["step"] == tuning["step"].max()]
    accuracy = last.groupby(keys, sort=False, dropna=False)["test_accuracy"].mean()
    return table.assign(final_test_accuracy=accuracy, target=target).reset_index()


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "time_to_accuracy", task="MNIST-1D, 1-D CNN")
    plan = _plan(args.quick)
    curves = training(plan)
    chosen = tune(curves, plan, plan["targets"][0])
    table = summary(curves, chosen, plan)
    _common.write(
        args,
        {"summary": table, "grid": grid_table(curves, plan)},
        {"curves": figure(curves, chosen, plan)},
        seeds=len(plan["tune_seeds"]) + len(plan["report_seeds"]),
    )
    checks(table, plan)
    return 0


def checks(table: pd.DataFrame, plan: dict) -> None:
    """Conclusions both theory and this run support (each says which)."""
    _common.require(
        bool(np.allclose(table["seconds_per_step"], table["closed_form_per_step"], rtol=1e-4)),
        "(the model) every method's simulated seconds per step equal the closed form",
    )
    first = table[table["target"] == plan["targets"][0]].set_index(["clock", "method"])
    _common.require(
        bool(first["seeds_reaching"].eq(len(plan["report_seeds"])).all()),
        f"(evidence) every tuned method reaches {plan['targets'][0]:.0%} on every held-out seed",
    )
    slow = first.loc["1g"]
    _common.require(
        bool(slow.loc["diloco", "seconds_mean"] < slow.loc["complete", "seconds_mean"]),
        "(theory and evidence) at 1 Gb/s DiLoCo, one all-reduce every H steps, reaches the "
        "target in fewer seconds than all-reduce D-PSGD (the complete graph), one every step",
    )
    _common.require(
        bool(
            slow.loc["one_peer_exponential", "seconds_mean"]
            < slow.loc["exponential", "seconds_mean"]
        ),
        "(theory and evidence) at 1 Gb/s the one-peer exponential graph, 1 message per step, "
        "reaches the target in fewer seconds than the static one, log2(n) messages",
    )


if __name__ == "__main__":
    raise SystemExit(main())
