"""Time to accuracy: when the ranking by steps and the ranking by simulated seconds disagree.

16 workers train the 1-D CNN on MNIST-1D (IID shards, batch 16 per worker) with
D-PSGD and local momentum 0.9 on the ring, the static exponential graph, the
one-peer exponential graph and the complete graph, and with DiLoCo (8 inner
steps of Nesterov SGD, the paper's outer Nesterov step 0.7 / 0.9), each tuned
on its own learning-rate grid (the run fails if the best rate is at an edge),
5 seeds. Every run carries two simulated clocks (``decjax.timing``), in the
same compiled sweep:

* messages the size of a ResNet-18 (11.7 M float32 values, 46.8 MB: the 1-D
  CNN is trained, the clock times the messages of the model the field trains),
  a compute time of 50 ms per step (an assumption, not a measurement);
* every worker behind one switch port, shared by all it sends, at 1 Gb/s
  (50 us latency) or 100 Gb/s (2 us).

Reported: steps and simulated seconds to the target test accuracy of the
averaged model (mean +- std over the seeds that reach it), each method's rank
by steps and by time at each bandwidth, and each method's seconds per step
checked against the closed form. Quick mode: 8 workers, 2 seeds, 3 rates, 160 steps.

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
EVERY = 8  # DiLoCo's inner steps


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


def closed_form(method: str, label: str, n: int) -> float:
    """Mean seconds per step of ``method`` on clock ``label`` (what the model should give):
    ``k`` messages per worker through its port, or a ring all-reduce every ``EVERY`` steps."""
    latency, gb = NETWORKS[label]
    port = timing.gbps(gb)
    if method == "diloco":
        allreduce = 2 * (n - 1) * (latency + RESNET18_BYTES / n / port)
        return COMPUTE + allreduce / EVERY
    messages = float(decjax.gossip.messages_per_worker(decjax.topology.by_name(method, n)))
    return COMPUTE + latency + messages * RESNET18_BYTES / port


def _plan(quick: bool) -> dict:
    if quick:
        return {
            "n": 8,
            "samples": 4_000,
            "steps": 160,
            "seeds": 2,
            "grid": [2.0**-4, 2.0**-3, 2.0**-2],  # D-PSGD
            "diloco_grid": [2.0**-6, 2.0**-5, 2.0**-4],
            "evaluations": 20,
        }
    return {
        "n": 16,
        "samples": 8_000,
        "steps": 400,
        "seeds": 5,
        "grid": [2.0**-6, 2.0**-5, 2.0**-4, 2.0**-3, 2.0**-2, 2.0**-1],
        "diloco_grid": [2.0**-6, 2.0**-5, 2.0**-4, 2.0**-3, 2.0**-2, 2.0**-1],
        "evaluations": 40,
    }


def training(plan: dict) -> pd.DataFrame:
    n = plan["n"]
    ds, model = _training.mnist1d(plan["samples"])
    model_bytes = decjax.gossip.worker_bytes(decjax.replicate(model.init(jax.random.key(0)), n))
    common = {
        "steps": plan["steps"],
        "seeds": plan["seeds"],
        "evaluations": plan["evaluations"],
        "timing": clocks(model_bytes),
    }
    graphs = [
        decjax.ring(n),
        decjax.exponential(n),
        decjax.one_peer_exponential(n),
        decjax.complete(n),
    ]
    print(f"D-PSGD: {len(plan['grid'])} rates x 4 graphs x {plan['seeds']} seeds", flush=True)
    dpsgd = _training.topology_sweep(ds, model, n, graphs, plan["grid"], **common)
    print(f"DiLoCo: {len(plan['diloco_grid'])} rates x {plan['seeds']} seeds", flush=True)

    def make_diloco(lr, topology):
        del topology  # an all-reduce
        return decjax.diloco(optax.sgd(lr, momentum=0.9, nesterov=True), every=EVERY)

    diloco = _training.topology_sweep(
        ds, model, n, [decjax.complete(n)], plan["diloco_grid"], make=make_diloco, **common
    ).assign(topology="diloco")
    return pd.concat([dpsgd, diloco], ignore_index=True).rename(columns={"topology": "method"})


def reach(tuned: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per method and seed: the first step and simulated seconds with test accuracy >= target."""
    rows = []
    for (method, seed), run in tuned.groupby(["method", "seed"], sort=False):
        run = run.sort_values("step")
        hit = run[run["test_accuracy"] >= target]
        first = hit.iloc[0] if len(hit) else None
        row = {"method": method, "seed": seed, "step": np.nan if first is None else first["step"]}
        for label in NETWORKS:
            row[f"seconds_{label}"] = np.nan if first is None else first[f"time_{label}"]
        rows.append(row)
    return pd.DataFrame(rows)


def summary(tuned: pd.DataFrame, reached: pd.DataFrame, seeds: int, n: int) -> pd.DataFrame:
    last = tuned[tuned["step"] == tuned["step"].max()]
    out = last.groupby("method", sort=False).agg(
        lr=("lr", "first"),
        test_accuracy_mean=("test_accuracy", "mean"),
        test_accuracy_std=("test_accuracy", "std"),
    )
    stats = reached.groupby("method", sort=False)
    out["seeds_reaching"] = stats["step"].count()
    out["steps_to_target_mean"] = stats["step"].mean()
    out["steps_to_target_std"] = stats["step"].std()
    for label in NETWORKS:
        out[f"seconds_{label}_mean"] = stats[f"seconds_{label}"].mean()
        out[f"seconds_{label}_std"] = stats[f"seconds_{label}"].std()
        per_step = last.groupby("method", sort=False)[f"time_{label}"].mean() / last["step"].max()
        out[f"seconds_per_step_{label}"] = per_step
        out[f"closed_form_per_step_{label}"] = [closed_form(m, label, n) for m in out.index]
    everyone = out["seeds_reaching"] == seeds
    out["rank_by_steps"] = out["steps_to_target_mean"].where(everyone).rank(method="min")
    for label in NETWORKS:
        out[f"rank_by_seconds_{label}"] = (
            out[f"seconds_{label}_mean"].where(everyone).rank(method="min")
        )
    return out.reset_index()


def figure(tuned: pd.DataFrame, target: float, plan: dict):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for method, rows in tuned.groupby("method", sort=False):
        stats = rows.groupby("step").agg(
            acc=("test_accuracy", "mean"),
            std=("test_accuracy", "std"),
            **{label: (f"time_{label}", "mean") for label in NETWORKS},
        )
        label = f"{method} (lr {rows['lr'].iloc[0]:g})"
        _common.band_plot(axes[0], stats.index, stats["acc"], stats["std"].fillna(0), label)
        for ax, clock in zip(axes[1:], NETWORKS, strict=True):
            _common.band_plot(ax, stats[clock], stats["acc"], stats["std"].fillna(0), label)
    titles = ["steps", *(f"simulated seconds, {NETWORKS[c][1]:g} Gb/s ports" for c in NETWORKS)]
    for ax, title in zip(axes, titles, strict=True):
        ax.axhline(target, color="k", lw=0.8, ls=":")
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.set_xscale("log")
    axes[0].set_ylabel("test accuracy of the averaged model")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Time to accuracy: 1-D CNN on MNIST-1D, n = {plan['n']}, timed as ResNet-18 messages and "
        f"{COMPUTE * 1e3:g} ms steps ({plan['seeds']} seeds, +-1 std)"
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "time_to_accuracy")
    plan = _plan(args.quick)
    target = 0.5 if args.quick else 0.75
    curves = training(plan)
    tuned = pd.concat(
        [
            _training.tune(part, plan[grid], by=("method",), what="time to accuracy")
            for grid, part in (
                ("grid", curves[curves["method"] != "diloco"]),
                ("diloco_grid", curves[curves["method"] == "diloco"]),
            )
        ],
        ignore_index=True,
    )
    reached = reach(tuned, target)
    table = summary(tuned, reached, plan["seeds"], plan["n"])
    table.insert(1, "target_accuracy", target)
    grid = curves[curves["step"] == curves["step"].max()].groupby(["method", "lr"], sort=False)
    _common.write(
        args,
        {
            "summary": table,
            "seeds": reached,
            "grid": grid["train_loss"].mean().reset_index(),
        },
        {"curves": figure(tuned, target, plan)},
        seeds=plan["seeds"],
    )
    for label in NETWORKS:
        _common.require(
            bool(
                np.allclose(
                    table[f"seconds_per_step_{label}"],
                    table[f"closed_form_per_step_{label}"],
                    rtol=1e-4,
                )
            ),
            f"every method's simulated seconds per step at {label} equal the closed form",
        )
    ranks = table.set_index("method")
    _common.require(
        bool(ranks["seeds_reaching"].eq(plan["seeds"]).all()),
        f"every method reaches {target:.0%} test accuracy on every seed",
    )
    _common.require(
        bool(
            ranks.loc["complete", "rank_by_steps"] <= 2
            and ranks.loc["complete", "rank_by_seconds_1g"] == len(ranks)
        ),
        "the complete graph is among the two fastest by steps and the slowest in seconds at 1 Gb/s",
    )
    _common.require(
        bool(ranks.loc["diloco", "rank_by_seconds_1g"] == 1),
        "DiLoCo, which talks once every 8 steps, is the fastest in seconds at 1 Gb/s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
