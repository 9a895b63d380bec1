"""Shared plumbing for the paper reproductions: arguments, output files, markdown tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend


def parse(
    doc: str, argv=None, name: str = "", *, task: str | None = None, variants: dict | None = None
) -> argparse.Namespace:
    """The scripts' shared flags. ``task`` names a script's one fixed task; without it
    the script trains the 1-D CNN on MNIST-1D or, with ``--cifar10 DIR``, ResNet-20.

    ``variants``: ``{flag: help}`` of a script's other runs; ``--flag`` sets
    ``args.flag`` and names the run (its files and default folder) ``name_flag``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, text in (variants or {}).items():
        parser.add_argument(f"--{flag}", action="store_true", help=text)
    parser.add_argument(
        "--quick", action="store_true", help="a small run for CI (minutes on a CPU)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the tables, figures and run record (default: the committed "
        f"experiments/results/{name}/, wherever the script is run from)",
    )
    if task is None:  # a script with a fixed task has no --cifar10 to ignore
        parser.add_argument(
            "--cifar10",
            type=Path,
            default=None,
            metavar="DIR",
            help="train ResNet-20 on the CIFAR-10 binary files in DIR instead of the 1-D CNN "
            "on MNIST-1D (the deep-learning parts; longer runs, sized for one GPU)",
        )
    args = parser.parse_args(argv)
    name = "_".join([name, *(flag for flag in variants or {} if getattr(args, flag))])
    args.out = args.out or Path(__file__).resolve().parent / "results" / name
    if task is None:
        args.task = "CIFAR-10, ResNet-20" if args.cifar10 else "MNIST-1D, 1-D CNN"
    else:
        args.task, args.cifar10 = task, None
    if args.cifar10 is not None and not args.cifar10.is_dir():
        parser.error(
            f"--cifar10: {args.cifar10} is not a directory; pass the folder with "
            "data_batch_1.bin ... test_batch.bin"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    args.name = name
    args.started = time.time()
    args.commit = _commit()  # the code that runs (a commit made during the run is not it)
    return args


def _commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes); on a copy of the
    tree without git (a lent GPU machine), ``$EXPERIMENT_COMMIT`` or ``"unknown"``."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("EXPERIMENT_COMMIT", "unknown")
    return head + ("+dirty" if dirty else "")


def provenance() -> dict:
    """Where and with what a run ran: device, library versions, date (for ``name_run.json``)."""
    import jax

    device = jax.devices()[0]
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "commit": _commit(),
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **{pkg: _version(pkg) for pkg in ("decjax", "jax", "jaxlib", "optax", "flax", "numpy")},
    }


def _version(package: str) -> str:
    """The installed version; for a package run from a checkout without installing it
    (``PYTHONPATH=.`` on a lent GPU machine), its ``__version__`` marked so."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        try:
            module = importlib.import_module(package)
        except ImportError:
            return "not installed"
        where = Path(module.__file__ or "?").parent
        return f"{getattr(module, '__version__', 'unversioned')}, not installed, run from {where}"


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A pandas DataFrame as a GitHub markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(args, tables: dict, figures: dict, seeds: int | None = None) -> None:
    """Write ``name_table.csv``/``.md`` for every table, ``name_fig.png`` for every figure.

    Also ``name_run.json``: the mode (quick or full), the seeds, the wall-clock
    time since :func:`parse` and :func:`provenance` (device, versions, date).
    """
    info = {
        "script": args.name,
        "mode": "quick" if args.quick else "full",
        "task": args.task,
        "seeds": seeds,
        "wall_clock_s": round(time.time() - args.started, 1),
        **provenance(),
        "commit": args.commit,
    }
    (args.out / f"{args.name}_run.json").write_text(json.dumps(info, indent=2) + "\n")
    for key, df in tables.items():
        df.to_csv(args.out / f"{args.name}_{key}.csv", index=False)
        (args.out / f"{args.name}_{key}.md").write_text(markdown_table(df))
        print(f"\n{key}:\n{markdown_table(df)}")
    for key, fig in figures.items():
        fig.savefig(args.out / f"{args.name}_{key}.png", dpi=110)
        plt.close(fig)


# ---------------------------------------------------------------- tasks


def convex_task(num_samples: int = 50_000, *, l2: float = 1e-3, seed: int = 0):
    """L2-regularised softmax regression on a hard synthetic classification task.

    ``sklearn.datasets.make_classification`` with 64 features (16 informative),
    10 classes of 3 clusters each, ``class_sep=0.7``, ``flip_y=0.05``,
    standardised. Returns ``(dataset, model, f_star)``: ``f_star`` is the
    minimum of the regularised training loss, found in float64 by L-BFGS to a
    gradient norm below 1e-10, so ``f(x) - f_star`` is the suboptimality.
    """
    import numpy as np
    from scipy.optimize import minimize
    from sklearn.datasets import make_classification

    import decjax

    x, y = make_classification(
        n_samples=num_samples,
        n_features=64,
        n_informative=16,
        n_redundant=8,
        n_classes=10,
        n_clusters_per_class=3,
        class_sep=0.7,
        flip_y=0.05,
        random_state=seed,
    )
    x = (x - x.mean(0)) / x.std(0)
    split = num_samples * 4 // 5
    ds = decjax.data.from_arrays(
        x[:split].astype(np.float32),
        y[:split],
        x_test=x[split:].astype(np.float32),
        y_test=y[split:],
    )
    model = decjax.problems.logistic_regression(64, 10, l2=l2)
    xt, yt = x[:split], y[:split]
    onehot = np.eye(10)[yt]

    def objective(flat):  # the same loss as model.loss (weights and bias regularised), float64
        w, b = flat[:640].reshape(64, 10), flat[640:]
        logits = xt @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(yt)), yt])) + 0.5 * l2 * flat @ flat
        g = (p - onehot) / len(yt)
        grad = np.concatenate([(xt.T @ g).ravel(), g.sum(0)]) + l2 * flat
        return loss, grad

    best = minimize(
        objective,
        np.zeros(650),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "maxiter": 5000},
    )
    return ds, model, float(best.fun)


# ---------------------------------------------------------------- statistics and checks


def bands(df, by: list[str], value: str):
    """Mean, standard deviation, t-based 95 % confidence half-width and count of ``value``
    over seeds."""
    import numpy as np
    from scipy import stats

    grouped = df.groupby(by, sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    t = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1))
    out["ci95"] = np.where(out["count"] > 1, t * out["std"] / np.sqrt(out["count"]), np.nan)
    return out.rename(columns={"mean": f"{value}_mean", "std": f"{value}_std"})


def best_interior(grid, scores, what: str) -> int:
    """Index of the smallest score; exits non-zero when it sits at an edge of the grid."""
    import numpy as np

    scores = np.asarray(scores, dtype=float)
    scores = np.where(np.isfinite(scores), scores, np.inf)
    i = int(np.argmin(scores))
    if i in (0, len(scores) - 1):
        raise SystemExit(
            f"{what}: the best learning rate {grid[i]} is at the edge of the grid {list(grid)} "
            f"(mean final scores {[float(f'{v:.4g}') for v in scores]}); widen the grid"
        )
    return i


def t_half_width(values) -> float:
    """Half-width of the t-based 95 % interval of the mean of ``values`` (a pandas Series;
    NaN ignored): ``t(k - 1) s / sqrt(k)``, t(4) = 2.776 for 5 seeds; NaN below 2 values."""
    import numpy as np
    from scipy import stats

    k = int(values.count())
    return float(stats.t.ppf(0.975, k - 1) * values.std() / np.sqrt(k)) if k > 1 else np.nan


def require(condition: bool, claim: str) -> None:
    """A qualitative conclusion the run must show; exits non-zero (for CI) when it does not."""
    if not condition:
        raise SystemExit(f"conclusion reversed: {claim}")
    print(f"checked: {claim}")


def grouped_bars(ax, categories, series: dict, *, capsize: float = 3):
    """Side-by-side bars per category, one per series (``label -> (values, errors)``), each
    with its error bar; returns the centre of each category's group (for ticks and markers)."""
    import numpy as np

    width = 0.8 / len(series)
    x = np.arange(len(categories))
    for k, (label, (values, errors)) in enumerate(series.items()):
        ax.bar(x + k * width, values, width, yerr=errors, capsize=capsize, label=label)
    return x + 0.4 - width / 2


def band_plot(ax, x, mean, std, label: str, **kwargs):
    """A mean curve with a shaded +-1 standard deviation band."""
    (line,) = ax.plot(x, mean, label=label, **kwargs)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    return line
