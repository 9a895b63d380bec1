"""What epsilon costs on a graph: DP-SGD per worker, Muffliato and zero-sum noise on MNIST-1D.

16 workers train an MLP (40-128-10) on MNIST-1D (IID shards of 200 examples) with
D-PSGD; every worker's gradient is DP-SGD's (``decjax.privacy.Clip``: per-example
clipping to C = 1, Gaussian noise of sigma C / B, Poisson samples of expected size
B = 32, the sampling the accountant assumes), for sigma in ``SIGMAS``, on the ring,
the hypercube (the undirected log-degree graph; the static exponential graph is
directed, which Muffliato's bound does not cover) and the complete graph. Three
ways to spend the noise:

* **local DP**: one gossip round per step. Guarantee: each worker's updates are
  (epsilon, delta)-DP against anyone who sees them; ``epsilon`` from the PLD
  accountant with amplification by Poisson sampling.
* **Muffliato** (Cyffers et al., NeurIPS 2022): the same noisy gradients, then
  ``ROUNDS`` gossip rounds per step. Guarantee: pairwise network DP, from
  Muffliato's Theorem 1 composed over the steps in Rényi DP
  (``decjax.privacy.gd_pairwise_epsilon``; no amplification by sampling), reported
  as the mean and the largest over ordered pairs, beside the local guarantee
  computed the same way (its neighbours' loss).
* **zero-sum** (DECOR's correlated noise, Allouah et al., ICML 2024): one gossip
  round, and on top of the same independent noise every pair of neighbours adds
  noise of multiplier sigma that cancels in the worker mean
  (``decjax.privacy.ZeroSum``). ``epsilon`` counts only the independent noise
  (the local guarantee against a neighbour holding the pair's seed); DECOR's
  SecLDP accountant, which credits the pairwise noise against eavesdroppers, is
  not implemented.

Rates: each (graph, method) tuned at sigma = 1 on seed 0 over ``GRID`` (lowest
final training loss of the averaged model, interior of the grid), then every sigma
reported on held-out seeds 1-5 (mean, t-based 95 % interval). Also the non-private
baseline (clipping only) and the published DP-SGD epsilons the accountant
reproduces (TF Privacy's MNIST tutorial table).

    python experiments/privacy.py            # full (about 25 minutes on the 2-core CPU)
    python experiments/privacy.py --quick    # half a minute: the ring, two sigmas, 30 steps

Writes privacy_curves/final/tuning/reference (.csv/.md), privacy_accuracy.png and
the run record to --out (default experiments/results/privacy/).
"""

from __future__ import annotations

import _common
import _training
import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import decjax
from decjax import privacy

N, BATCH, CLIP, DELTA = 16, 32, 1.0, 1e-5
SAMPLES = 4_000  # MNIST-1D examples (80 % for training: 200 per worker)
STEPS = 300  # 48 epochs of each shard at q = 32 / 200
ROUNDS = 3  # Muffliato's gossip rounds per step
SIGMAS = (1.0, 2.0, 4.0)
GRID = (0.1, 0.3, 1.0, 3.0)
TUNE_SEEDS, REPORT_SEEDS = (0,), (1, 2, 3, 4, 5)
METHODS = ("local DP", "Muffliato", "zero-sum")
GRAPHS = {"ring": decjax.ring, "hypercube": decjax.hypercube, "complete": decjax.complete}
QUICK_RATE = 0.3

# TF Privacy's MNIST DP-SGD tutorial (tutorials/README.md): batch 256 of 60,000,
# delta 1e-5, steps = epochs * 60000 // 256: (noise multiplier, epochs) -> epsilon.
PUBLISHED = {(1.12, 60): 2.92, (0.6, 30): 9.74, (1.2, 10): 1.20}


def run(ds, model, graph: str, method: str, rates, sigmas, seeds, steps: int):
    """One vmapped sweep (rates x sigmas x seeds; zero-sum: one per sigma, its pairs'
    multiplier following the independent noise's): a tidy DataFrame of the records."""
    topology = GRAPHS[graph](N)
    rounds = ROUNDS if method == "Muffliato" else 1
    test = (ds.x_test, ds.y_test)

    def evaluate(params, train):
        return {
            "objective": model.loss(params, train),
            **{f"held_out_{k}": v for k, v in model.eval_fn(params, test).items()},
        }

    def make(lr):  # the grid's noise_multiplier sets the privacy option, not the algorithm
        return decjax.dpsgd(lr, topology, rounds=rounds)

    grid = {"lr": list(rates), "seed": list(seeds)}
    if method == "zero-sum":
        frames = [
            _sweep(
                ds,
                model,
                make,
                {**grid, "noise_multiplier": [s]},
                steps,
                evaluate,
                privacy.Clip(CLIP, delta=DELTA, zero_sum=privacy.ZeroSum.on(topology, s)),
            )
            for s in sigmas
        ]
        df = pd.concat(frames, ignore_index=True)
    else:
        clip = privacy.Clip(CLIP, delta=DELTA)
        df = _sweep(
            ds, model, make, {**grid, "noise_multiplier": list(sigmas)}, steps, evaluate, clip
        )
    return df.assign(graph=graph, method=method)


def _sweep(ds, model, make, grid, steps, evaluate, clip):
    result = decjax.sweep(
        model.loss,
        decjax.replicate(model.init(jax.random.key(0)), N),
        make,
        decjax.data.distribute(ds, N, "iid", key=0),
        grid,
        steps=steps,
        batch_size=BATCH,
        eval_every=max(1, steps // 5),
        key=jax.random.key(1),
        eval_fn=evaluate,
        eval_data=(ds.x_train[: _training.TRAIN_EVAL], ds.y_train[: _training.TRAIN_EVAL]),
        eval_workers=True,
        progress=False,
        privacy=clip,
    )
    df = result.to_dataframe().rename(
        columns={
            "test_objective": "train_loss_averaged",
            "test_held_out_accuracy": "test_accuracy",
            "worker_test_held_out_accuracy": "worker_accuracy",
            "noise_multiplier": "sigma",
        }
    )
    keep = [
        "lr",
        "sigma",
        "seed",
        "step",
        "train_loss_averaged",
        "test_accuracy",
        "worker_accuracy",
        "consensus_distance",
        "epsilon",
    ]
    return df[keep].rename(columns={"train_loss_averaged": "train_loss"})


def baseline(ds, model, graph: str, rate: float, seeds, steps: int) -> pd.DataFrame:
    """Clipping without noise (epsilon infinite): the accuracy privacy is measured from."""
    df = run(ds, model, graph, "local DP", [rate], [0.0], seeds, steps)
    return df.assign(method="no noise")


def tune(ds, model, graphs, steps: int):
    """Each (graph, method)'s rate at sigma = 1 on the tuning seed."""
    frames = []
    for graph in graphs:
        for method in METHODS:
            print(f"tuning {graph} / {method} on {list(GRID)}", flush=True)
            frames.append(run(ds, model, graph, method, GRID, [1.0], TUNE_SEEDS, steps))
    tuning = pd.concat(frames, ignore_index=True)
    chosen = _training.tune(tuning, list(GRID), by=("graph", "method"), what="sigma = 1")
    rates = chosen.groupby(["graph", "method"], sort=False)["lr"].first().to_dict()
    return tuning, rates


def network_guarantee(graph: str, method: str, sigma: float, steps: int) -> dict:
    """Muffliato's pairwise epsilon (mean and largest over ordered pairs) and the local
    Gaussian mechanism's, both in Rényi DP without amplification by sampling."""
    if method != "Muffliato" or sigma == 0:
        return {}
    pairs = privacy.gd_pairwise_epsilon(GRAPHS[graph](N), ROUNDS, steps, sigma, DELTA)
    off = pairs[~np.eye(N, dtype=bool)]
    # every pair of the complete graph is a neighbour: the local guarantee, same accountant
    local = privacy.gd_pairwise_epsilon(decjax.complete(N), ROUNDS, steps, sigma, DELTA)[0, 1]
    return {"network_eps_mean": off.mean(), "network_eps_max": off.max(), "local_eps_rdp": local}


def final_table(curves: pd.DataFrame, steps: int) -> pd.DataFrame:
    last = _training.last_records(curves, ["graph", "method", "sigma", "lr", "seed"])
    rows = []
    for (graph, method, sigma), part in last.groupby(["graph", "method", "sigma"], sort=False):
        accuracy = 100 * part["test_accuracy"].fillna(0.0)
        rows.append(
            {
                "graph": graph,
                "method": method,
                "sigma": sigma,
                "lr": part["lr"].iloc[0],
                "epsilon_ldp": part["epsilon"].iloc[0],
                **network_guarantee(graph, method, sigma, steps),
                "accuracy_mean": accuracy.mean(),
                "accuracy_ci95": _common.t_half_width(accuracy),
                "worker_accuracy_mean": 100 * part["worker_accuracy"].fillna(0.0).mean(),
                "worker_accuracy_ci95": _common.t_half_width(100 * part["worker_accuracy"]),
                "consensus_distance": part["consensus_distance"].mean(),
                "diverged": int(part["train_loss"].isna().sum()),
                "seeds": part["seed"].nunique(),
            }
        )
    return pd.DataFrame(rows)


def reference() -> pd.DataFrame:
    """The published DP-SGD epsilons beside the accountant's."""
    rows = []
    for (sigma, epochs), published in PUBLISHED.items():
        steps = epochs * 60000 // 256
        kwargs = {"delta": 1e-5, "sampling_rate": 256 / 60000}
        rows.append(
            {
                "noise_multiplier": sigma,
                "epochs": epochs,
                "steps": steps,
                "tf_privacy_published": published,
                "decjax_rdp_classic": privacy.epsilon(
                    steps, sigma, accountant="rdp_classic", **kwargs
                ),
                "decjax_rdp": privacy.epsilon(steps, sigma, accountant="rdp", **kwargs),
                "decjax_pld": privacy.epsilon(steps, sigma, **kwargs),
            }
        )
    return pd.DataFrame(rows)


def plot(final: pd.DataFrame):
    graphs = list(dict.fromkeys(final["graph"]))
    fig, axes = plt.subplots(1, len(graphs), figsize=(4.6 * len(graphs), 3.8), squeeze=False)
    for ax, graph in zip(axes[0], graphs, strict=True):
        part = final[final["graph"] == graph]
        for method in METHODS:
            rows = part[part["method"] == method].sort_values("epsilon_ldp")
            if rows.empty:
                continue
            ax.errorbar(
                rows["epsilon_ldp"],
                rows["accuracy_mean"],
                yerr=rows["accuracy_ci95"],
                marker="o",
                capsize=2,
                label=method,
            )
        free = part[part["method"] == "no noise"]["accuracy_mean"]
        if not free.empty:
            ax.axhline(free.iloc[0], color="grey", linestyle="--", label="no noise")
        ax.set_xscale("log")
        ax.set_xlabel("local epsilon (PLD, Poisson q = 0.16, delta 1e-5)")
        ax.set_title(graph, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy of the averaged model (%)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(
        f"DP-SGD per worker on MNIST-1D, MLP, n = {N}, C = {CLIP:g}, B = {BATCH} "
        f"(mean, 95 % CI over {final['seeds'].max()} seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def check(final: pd.DataFrame, ref: pd.DataFrame, quick: bool) -> None:
    """The conclusions this run supports; a reversal fails the script (and CI)."""
    for _, row in ref.iterrows():
        _common.require(
            abs(row["decjax_rdp_classic"] - row["tf_privacy_published"]) < 0.025,
            f"the classic RDP accountant gives TF Privacy's epsilon {row['tf_privacy_published']}"
            f" (sigma {row['noise_multiplier']}, {row['epochs']} epochs)",
        )
    cell = final.set_index(["graph", "method", "sigma"])
    _common.require(
        bool(np.isfinite(final["accuracy_mean"]).all() and (final["diverged"] == 0).all()),
        "every run trains to a finite model",
    )
    muffliato = final[final["method"] == "Muffliato"].dropna(subset=["network_eps_mean"])
    bounds = {"ring": (0.0, 0.5), "hypercube": (0.5, 0.9), "complete": (1.0, 1.0)}
    for _, row in muffliato.iterrows():
        low, high = bounds[row["graph"]]
        share = row["network_eps_mean"] / row["local_eps_rdp"]
        _common.require(
            low - 1e-9 <= share <= high + 1e-9,
            f"{row['graph']}: Muffliato's mean pairwise epsilon is {low:g} to {high:g} times "
            "the local one (3 rounds a step: the ring's distant pairs learn little, the "
            "hypercube's 4 hops are close, the complete graph's every pair is a neighbour)",
        )
    if quick:  # 30 steps: the accountants' conclusions only, the accuracies need the full run
        return
    for _, row in muffliato.iterrows():
        _common.require(
            row["epsilon_ldp"] < row["network_eps_mean"],
            f"{row['graph']}, sigma {row['sigma']}: the local accountant with amplification by "
            "Poisson sampling is below Muffliato's mean pairwise epsilon, which counts none",
        )
    noisy = final[final["method"] != "no noise"]
    for (graph, method), part in noisy.groupby(["graph", "method"]):
        ordered = part.sort_values("sigma")
        _common.require(
            ordered["accuracy_mean"].iloc[0] > ordered["accuracy_mean"].iloc[-1] + 5,
            f"{graph} / {method}: less noise (larger epsilon) is more accurate by > 5 points",
        )
    for sigma, part in noisy.groupby("sigma"):
        spread = part["accuracy_mean"].max() - part["accuracy_mean"].min()
        _common.require(
            spread < 1,
            f"at sigma {sigma} the averaged model's accuracy is within 1 point on every graph "
            "and method (gossip keeps the mean; its noise is the workers' average anywhere)",
        )
    for sigma in SIGMAS:
        workers = {g: cell.loc[(g, "local DP", sigma), "worker_accuracy_mean"] for g in GRAPHS}
        _common.require(
            workers["ring"] < workers["hypercube"] < workers["complete"],
            f"at sigma {sigma} the workers' own models rank ring < hypercube < complete",
        )
        for graph in ("ring", "hypercube"):
            local = cell.loc[(graph, "local DP", sigma), "consensus_distance"]
            _common.require(
                cell.loc[(graph, "Muffliato", sigma), "consensus_distance"]
                < local
                < cell.loc[(graph, "zero-sum", sigma), "consensus_distance"],
                f"{graph}, sigma {sigma}: Muffliato's 3 rounds shrink the consensus distance, "
                "zero-sum noise grows it",
            )
        same = abs(
            cell.loc[("complete", "zero-sum", sigma), "accuracy_mean"]
            - cell.loc[("complete", "local DP", sigma), "accuracy_mean"]
        )
        _common.require(
            same < 0.01, f"on the complete graph zero-sum noise cancels (sigma {sigma})"
        )


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "privacy", task="MNIST-1D, MLP")
    ds = decjax.data.load_mnist1d(SAMPLES)
    model = decjax.problems.mlp([40, 128, 10])
    if args.quick:
        graphs, methods, sigmas, seeds, steps = (
            ("ring",),
            ("local DP", "Muffliato"),
            (1.0, 4.0),
            (1, 2),
            30,
        )
        rates = {(g, m): QUICK_RATE for g in graphs for m in METHODS}
        tuning = pd.DataFrame()
    else:
        graphs, methods, sigmas, seeds, steps = tuple(GRAPHS), METHODS, SIGMAS, REPORT_SEEDS, STEPS
        tuning, rates = tune(ds, model, graphs, steps)
        print("tuned rates:", rates, flush=True)
    frames = []
    for graph in graphs:
        for method in methods:
            rate = rates[(graph, method)]
            print(f"{graph} / {method} (lr {rate})", flush=True)
            frames.append(run(ds, model, graph, method, [rate], sigmas, seeds, steps))
        if not args.quick:  # the figure's no-noise line; the quick checks do not read it
            frames.append(baseline(ds, model, graph, rates[(graph, "local DP")], seeds, steps))
    curves = pd.concat(frames, ignore_index=True)
    final = final_table(curves, steps)
    ref = reference()
    tables = {"curves": curves, "final": final, "reference": ref}
    if not tuning.empty:
        tables["tuning"] = _training.grid_table(tuning, by=("graph", "method"))
    _common.write(args, tables, {"accuracy": plot(final)}, seeds=len(seeds))
    check(final, ref, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
