"""Shared deep-learning runs: the 1-D CNN on MNIST-1D, every topology tuned on its own grid.

One :func:`decjax.sweep` per call covers learning rates x topologies x seeds
(one compile); :func:`tune` then keeps, for each topology, the seeds of the
learning rate with the lowest mean final training loss, and exits non-zero when
that rate sits at an edge of the grid.
"""

from __future__ import annotations

import _common
import jax
import numpy as np
import pandas as pd

import decjax

TRAIN_EVAL = 2_000  # training examples the averaged model's training loss is measured on

GPU_IMAGES = 10_000_000
"""The size of every ``--cifar10`` mode: at most this many ResNet-20 training images
(worker minibatches summed over all steps and runs, tuning and report sweeps
together). Chosen for ten minutes on one H200 at an *assumed* 17,000 training
images per second including compilation and evaluation; not measured yet (no
run has had CIFAR-10 on a GPU). Each run record has the wall-clock to check it."""


def mnist1d(num_samples: int):
    """MNIST-1D (procedural, offline; 80/20 split) and the 1-D CNN."""
    return decjax.data.load_mnist1d(num_samples), decjax.problems.cnn1d()


def image_task(num_samples: int, cifar10=None):
    """``(dataset, model, name)``: MNIST-1D and the 1-D CNN, or with ``cifar10`` (a folder
    of CIFAR-10 binary files) all of CIFAR-10 and ResNet-20.

    ResNet-20 uses GroupNorm (``norm="group"``), which keeps no running
    statistics, so every script's evaluation stays stateless; BatchNorm under
    gossip is covered in ``docs/models.md``.
    """
    if cifar10 is None:
        return *mnist1d(num_samples), "MNIST-1D, 1-D CNN"
    ds = decjax.data.load_cifar(cifar10)
    return ds, decjax.problems.resnet20(norm="group"), "CIFAR-10, ResNet-20"


def averaged_sweep(
    model,
    params,
    make,
    data,
    grid: dict,
    *,
    steps: int,
    eval_fn,
    eval_data,
    batch_size: int = 16,
    evaluations: int = 20,
    timing=None,
) -> pd.DataFrame:
    """One vmapped :func:`decjax.sweep` over ``grid`` (e.g. learning rates x seeds): one
    compile; the averaged model is evaluated ``evaluations`` times; a tidy DataFrame
    (with ``timing``, the simulated clocks ``time``/``time_<label>`` too)."""
    result = decjax.sweep(
        model.loss,
        params,
        make,
        data,
        grid,
        steps=steps,
        batch_size=batch_size,
        eval_every=max(1, steps // evaluations),
        key=jax.random.key(1),
        eval_fn=eval_fn,
        eval_data=eval_data,
        eval_workers=False,
        progress=True,  # a long run shows where it is (a chunk per evaluation)
        timing=timing,
    )
    return result.to_dataframe()


def topology_sweep(
    ds,
    model,
    n: int,
    topologies,
    grid,
    *,
    steps: int,
    seeds=5,
    batch_size: int = 16,
    momentum: float = 0.9,
    evaluations: int = 10,
    make=None,
    timing=None,
) -> pd.DataFrame:
    """Learning rates x topologies x seeds of local-momentum D-PSGD, one vmapped sweep.

    ``seeds``: a count (seeds ``0 .. seeds - 1``) or the seeds themselves.

    Columns: ``topology, lr, seed, step, epoch, train_loss`` (the averaged model
    on ``TRAIN_EVAL`` training examples), ``test_accuracy``, ``test_loss`` (the
    averaged model on the test set) and ``consensus_distance``. ``make(lr,
    topology)`` replaces D-PSGD with momentum when given.
    """
    make = make or (lambda lr, topology: decjax.dpsgd(lr, topology, momentum=momentum))
    test = (ds.x_test, ds.y_test)

    def evaluate(params, train):
        return {
            "objective": model.loss(params, train),
            **{f"held_out_{k}": v for k, v in model.eval_fn(params, test).items()},
        }

    df = averaged_sweep(
        model,
        decjax.replicate(model.init(jax.random.key(0)), n),
        make,
        decjax.data.distribute(ds, n, "iid", key=0),
        {"lr": list(grid), "topology": list(topologies), "seed": _seeds(seeds)},
        steps=steps,
        batch_size=batch_size,
        evaluations=evaluations,
        timing=timing,
        eval_fn=evaluate,
        eval_data=(ds.x_train[:TRAIN_EVAL], ds.y_train[:TRAIN_EVAL]),
    ).drop(columns=["train_loss"], errors="ignore")
    df = df.rename(
        columns={
            "test_objective": "train_loss",
            "test_held_out_accuracy": "test_accuracy",
            "test_held_out_loss": "test_loss",
        }
    )
    return df.assign(n=n, epoch=df["step"] * n * batch_size / len(ds.y_train))


def held_out_images(
    n: int, steps: int, grid, runs: int, tune_seeds, report_seeds, batch_size: int = 16
) -> int:
    """Training images of :func:`tune_then_report` over ``runs`` configurations (e.g.
    topologies) per rate: every rate on the tuning seeds, and on the report seeds at
    most ``len(grid) - 2`` rates (the chosen ones are interior)."""
    per_run = n * batch_size * steps
    tuning = per_run * len(grid) * runs * len(_seeds(tune_seeds))
    if _seeds(report_seeds) == _seeds(tune_seeds):
        return tuning
    return tuning + per_run * min(len(grid) - 2, runs) * runs * len(_seeds(report_seeds))


def _seeds(seeds) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def tune_then_report(
    sweep,
    grid,
    tune_seeds,
    report_seeds,
    by=("n", "topology"),
    what: str = "",
    metric: str = "train_loss",
    report_sweep=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pick each group's rate on ``tune_seeds``, then measure it on ``report_seeds``.

    ``sweep(rates, seeds)`` returns curves (with columns ``by``, ``lr``, ``seed``).
    Reporting on seeds that did not choose the rate removes the winner's-curse
    bias of picking and reporting on the same runs. Returns ``(tuning, reported)``:
    every rate's curves on the tuning seeds (for :func:`grid_table`) and, per
    group, the report seeds' curves at the chosen rate. The second sweep runs
    only the chosen rates. With ``report_seeds == tune_seeds`` (the quick
    modes) nothing is re-run and the chosen rows are reported. ``metric``: the
    column whose final mean (lower is better) picks the rate. ``report_sweep(chosen,
    seeds)``, given, runs only the chosen pairs (``chosen``: a DataFrame of ``by``
    and ``lr``) instead of every group at every chosen rate.
    """
    tuning = sweep(list(grid), _seeds(tune_seeds))
    chosen = tune(tuning, grid, by, what, metric)
    if _seeds(report_seeds) == _seeds(tune_seeds):
        return tuning, chosen
    rates = chosen.groupby(list(by), sort=False)["lr"].first().reset_index()
    rates["_group"] = range(len(rates))  # keep the tuning's group order (not the rates')
    if report_sweep is None:
        report = sweep(sorted(set(rates["lr"])), _seeds(report_seeds))
    else:
        report = report_sweep(rates.drop(columns="_group"), _seeds(report_seeds))
    reported = report.merge(rates, on=[*by, "lr"], sort=False)
    reported = reported.sort_values("_group", kind="stable").drop(columns="_group")
    return tuning, reported.reset_index(drop=True)


def tune(
    df: pd.DataFrame, grid, by=("n", "topology"), what: str = "", metric: str = "train_loss"
) -> pd.DataFrame:
    """Per group, the seeds of the learning rate with the best mean final ``metric``.

    A diverged run (non-finite loss) counts as infinitely bad. Exits non-zero
    (``_common.best_interior``) when the best rate is at an edge of the grid. A
    one-rate grid is taken as given (nothing to tune).
    """
    if len(grid) == 1:
        return df
    last = df[df["step"] == df["step"].max()]
    frames = []
    for key, part in last.groupby(list(by), sort=False):
        means = part.groupby("lr")[metric].mean().reindex(list(grid))
        best = grid[_common.best_interior(grid, means.to_numpy(), f"{what} {key}")]
        mask = np.ones(len(df), bool)
        for column, value in zip(by, key if isinstance(key, tuple) else (key,), strict=True):
            mask &= (df[column] == value).to_numpy()
        frames.append(df[mask & (df["lr"] == best).to_numpy()])
    return pd.concat(frames, ignore_index=True)


def last_records(curves: pd.DataFrame, run: list[str]) -> pd.DataFrame:
    """Each run's last record, in the order the runs first appear in ``curves`` (a diverged
    run's last record is its final one: a sweep stops when all its runs have diverged)."""
    last = curves.sort_values("step", kind="stable").groupby(run, sort=False).tail(1)
    return last.set_index(run).reindex(curves[run].drop_duplicates()).reset_index()


def grid_table(df: pd.DataFrame, by=("n", "topology"), metric: str = "train_loss") -> pd.DataFrame:
    """Mean final ``metric`` for every learning rate of every group (to show the optimum)."""
    last = df[df["step"] == df["step"].max()]
    return last.groupby([*by, "lr"], sort=False)[metric].mean().reset_index()


def finals(tuned: pd.DataFrame, by=("n", "topology")) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the final metrics at the tuned learning rate."""
    last = tuned[tuned["step"] == tuned["step"].max()]
    out = last.groupby(list(by), sort=False).agg(
        lr=("lr", "first"),
        train_loss_mean=("train_loss", "mean"),
        train_loss_std=("train_loss", "std"),
        test_accuracy_mean=("test_accuracy", "mean"),
        test_accuracy_std=("test_accuracy", "std"),
        consensus_distance=("consensus_distance", "mean"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()
