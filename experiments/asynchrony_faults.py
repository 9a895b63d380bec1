"""Asynchrony and faults on real data: DASGD under message delays, D-PSGD under link failures.

Trains multinomial logistic regression on the digits dataset, label-sorted over
16 workers (each sees one or two classes, so disagreement between workers
matters), and plots the mean test accuracy of the workers' own models against
ticks:

* left: DASGD (all-to-all, Tosi & Theobald 2023) with delays uniform on
  0..S for S = 0, 4, 16, with the average staleness S_avg in the legend;
* right: D-PSGD on a ring whose links fail independently per step with
  probability 0, 0.1, 0.3 (Metropolis-Hastings weights re-derived on the
  surviving links).

    python experiments/asynchrony_faults.py            # full (about a minute on a laptop CPU)
    python experiments/asynchrony_faults.py --quick    # seconds, used by the tests

Writes the curves, the final values and the figure (asynchrony_faults_curves.csv,
_final.csv / .md, _accuracy.png) and the run record to --out (default:
experiments/results/asynchrony_faults/).
"""

from __future__ import annotations

import _common
import jax
import matplotlib.pyplot as plt
import pandas as pd

import decjax
from decjax.algorithms import uniform_delay

DELAYS = (0, 4, 16)
DROPS = (0.0, 0.1, 0.3)


def run(steps: int, eval_every: int, n: int = 16) -> pd.DataFrame:
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, n, "sorted", key=0)
    model = decjax.problems.logistic_regression(ds.num_features, ds.num_classes)
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    common = {
        "steps": steps,
        "batch_size": 8,
        "eval_every": eval_every,
        "key": jax.random.key(1),
        "eval_fn": model.eval_fn,
        "eval_data": (ds.x_test, ds.y_test),
        "eval_workers": True,
        "progress": False,
    }
    frames = []
    for bound in DELAYS:
        tx = decjax.dasgd(0.05, delays=uniform_delay(bound), n=n, key=jax.random.key(2))
        res = decjax.simulate(model.loss, params, tx, data, **common)
        df = res.to_dataframe().assign(experiment="dasgd", setting=f"S={bound}")
        frames.append(df)
    ring = decjax.ring(n)
    for p in DROPS:
        topo = decjax.topology.with_faults(ring, key=jax.random.key(3), link_failure=p)
        res = decjax.simulate(model.loss, params, decjax.dpsgd(0.3, topo), data, **common)
        frames.append(res.to_dataframe().assign(experiment="link_failures", setting=f"p={p:g}"))
    return pd.concat(frames, ignore_index=True)


def plot(df: pd.DataFrame):
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for ax, (experiment, title) in zip(
        axes,
        [
            ("dasgd", "DASGD, delays uniform on 0..S"),
            ("link_failures", "D-PSGD on a ring, links fail w.p. p"),
        ],
        strict=True,
    ):
        part = df[df.experiment == experiment]
        for setting, rows in part.groupby("setting", sort=False):
            label = setting
            if "staleness_avg" in rows and rows["staleness_avg"].notna().any():
                label += f" (S_avg={rows['staleness_avg'].iloc[-1]:.1f})"
            ax.plot(rows["step"], rows["worker_test_accuracy"], label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("tick")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy (mean over workers)")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "asynchrony_faults", task="digits, logistic regression")
    steps, every = (40, 20) if args.quick else (600, 20)
    df = run(steps, every)
    last = df.groupby(["experiment", "setting"], sort=False).last().reset_index()
    columns = ["test_accuracy", "worker_test_accuracy", "consensus_distance", "staleness_avg"]
    final = last[["experiment", "setting", "step", *[c for c in columns if c in last]]]
    _common.write(args, {"curves": df, "final": final}, {"accuracy": plot(df)}, seeds=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
