"""What a run returns: metric arrays, a DataFrame view and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LOG_SCALE_METRICS = ("consensus_distance", "suboptimality", "distance_to_optimum")


@dataclass
class SimulationResult:
    """Metrics recorded every ``eval_every`` steps, and the final state.

    Attributes:
      steps: ``(E,)`` step index at each evaluation.
      metrics: name -> array of shape ``(E,)`` (a single run) or ``(B, E)``
        (a sweep over ``B`` configurations, in ``configs`` order).
      state: the final :class:`~decjax.simulate.RunState` (device arrays;
        leading axis ``B`` for sweeps).
      configs: for sweeps, one dict of hyperparameters per configuration.
      diverged: whether training produced a non-finite loss (per config for sweeps).
      diverged_at: the first step whose training loss was non-finite (``None``
        if none; for sweeps an int array per config, 0 where none).
      traces: how many times the training program was traced (1 = one compile).
      wall_time: seconds, compilation included.
      resumed_from: the step a checkpoint resumed the run from (``None``: from the start).
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    state: Any
    configs: list[dict] | None = None
    diverged: Any = False
    diverged_at: Any = None
    traces: int = 0
    wall_time: float = 0.0
    resumed_from: int | None = None

    @classmethod
    def concat(cls, results: Sequence[SimulationResult], configs: Sequence[dict]):
        """Several single runs (same steps) as one result with ``configs``, like a sweep's.

        Runs that stopped early are padded with NaN. The states are kept as a list.
        """
        results = list(results)
        if not results or len(results) != len(configs):
            raise ValueError("give one config per result, and at least one result")
        steps = max((r.steps for r in results), key=len)
        metrics = {}
        for name in results[0].metrics:
            rows = np.full((len(results), len(steps)), np.nan)
            for i, r in enumerate(results):
                rows[i, : len(r.steps)] = r.metrics[name]
            metrics[name] = rows
        return cls(
            steps=steps,
            metrics=metrics,
            state=[r.state for r in results],
            configs=[dict(c) for c in configs],
            diverged=np.array([bool(np.any(r.diverged)) for r in results]),
            traces=sum(r.traces for r in results),
            wall_time=sum(r.wall_time for r in results),
        )

    @property
    def params(self):
        """Final stacked params."""
        return self.state.params

    @property
    def model_state(self):
        """Final stacked model state (BatchNorm statistics...); ``None`` for a stateless model."""
        return self.state.model_state

    def final(self, name: str) -> Any:
        """The last recorded value of metric ``name`` (an array over configs for sweeps)."""
        return self.metrics[name][..., -1]

    def reaches(self, name: str, target: float, *, x: str = "time", above: bool = True) -> Any:
        """The first ``x`` (``"time"``: simulated seconds, or ``"step"``) at which metric
        ``name`` reached ``target`` (``>=``; ``<=`` with ``above=False``); NaN where never.

        A float for a single run, an array over configurations for a sweep.

        Examples:
          >>> import numpy as np, decjax
          >>> res = decjax.SimulationResult(steps=np.array([10, 20, 30]), state=None, metrics={
          ...     "test_accuracy": np.array([0.5, 0.8, 0.9]), "time": np.array([1.0, 2.0, 3.0])})
          >>> res.reaches("test_accuracy", 0.75), res.reaches("test_accuracy", 0.75, x="step")
          (2.0, 20.0)
        """
        values = np.atleast_2d(self._metric(name))
        axis = np.atleast_2d(self._axis(x))
        hit = values >= target if above else values <= target
        first = np.argmax(hit, axis=-1)
        found = hit.any(axis=-1)
        rows = np.arange(values.shape[0])
        out = np.where(found, np.broadcast_to(axis, values.shape)[rows, first], np.nan)
        return out if self.configs is not None else float(out[0])

    def _metric(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise ValueError(f"metric {name!r} was not recorded; have {list(self.metrics)}")
        return self.metrics[name]

    def _axis(self, x: str) -> np.ndarray:
        """The x values: the steps, or each configuration's simulated seconds."""
        if x == "step":
            return self.steps.astype(np.float64)
        if x == "time" or x.startswith("time_"):
            if x not in self.metrics:
                raise ValueError(
                    f"x={x!r} needs simulated time: run with timing=decjax.timing.TimeModel(...)"
                    + (f" (recorded: {[m for m in self.metrics if m.startswith('time')]})")
                )
            return self.metrics[x]
        raise ValueError(f"x must be 'step', 'time' or 'time_<label>', got {x!r}")

    def to_dataframe(self):
        """A long-format ``pandas.DataFrame``: one row per (configuration, evaluation step).

        Columns: the sweep's hyperparameters (if any), ``step``, then every metric.
        """
        import pandas as pd

        configs = self.configs if self.configs is not None else [{}]
        frames = []
        for c, config in enumerate(configs):
            cols = {key: [value] * len(self.steps) for key, value in config.items()}
            cols["step"] = self.steps
            for name, values in self.metrics.items():
                cols[name] = values[c] if self.configs is not None else values
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)

    def plot(
        self,
        metrics: Sequence[str] | None = None,
        *,
        label_by: Sequence[str] | None = None,
        x: str = "step",
    ):
        """One panel per metric against step (or simulated time); one line per configuration.

        Args:
          metrics: names to plot (default: ``train_loss``, ``consensus_distance``
            and ``test_accuracy`` where recorded).
          label_by: hyperparameters shown in the legend (default: all that vary).
          x: ``"step"``, or ``"time"``: the simulated seconds of a run with a
            :class:`decjax.timing.TimeModel` (each configuration its own clock).

        Returns: the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        if metrics is None:
            wanted = ("train_loss", "consensus_distance", "test_accuracy")
            metrics = [m for m in wanted if m in self.metrics]
        unknown = [m for m in metrics if m not in self.metrics]
        if unknown:
            raise ValueError(f"metrics {unknown} were not recorded; have {list(self.metrics)}")
        xs = self._axis(x)
        xs = xs if self.configs is not None and xs.ndim == 2 else np.broadcast_to(xs, (1, len(xs)))
        configs = self.configs if self.configs is not None else [{}]
        if label_by is None:
            label_by = [k for k in configs[0] if len({str(c[k]) for c in configs}) > 1]
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
        for ax, name in zip(axes[0], metrics, strict=True):
            values = self.metrics[name]
            rows = values if self.configs is not None else values[None]
            for c, (config, row) in enumerate(zip(configs, rows, strict=True)):
                label = ", ".join(f"{k}={_fmt(config[k])}" for k in label_by) or None
                ax.plot(xs[c % len(xs)], row, label=label)
            ax.set_xlabel("step" if x == "step" else f"simulated seconds ({x})")
            ax.set_title(name)
            if name in LOG_SCALE_METRICS:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        if label_by:
            axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        return fig


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
