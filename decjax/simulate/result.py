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
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    state: Any
    configs: list[dict] | None = None
    diverged: Any = False
    diverged_at: Any = None
    traces: int = 0
    wall_time: float = 0.0

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

    def plot(self, metrics: Sequence[str] | None = None, *, label_by: Sequence[str] | None = None):
        """One panel per metric against step; one line per configuration. Returns the Figure.

        Args:
          metrics: names to plot (default: ``train_loss``, ``consensus_distance``
            and ``test_accuracy`` where recorded).
          label_by: hyperparameters shown in the legend (default: all that vary).
        """
        import matplotlib.pyplot as plt

        if metrics is None:
            wanted = ("train_loss", "consensus_distance", "test_accuracy")
            metrics = [m for m in wanted if m in self.metrics]
        unknown = [m for m in metrics if m not in self.metrics]
        if unknown:
            raise ValueError(f"metrics {unknown} were not recorded; have {list(self.metrics)}")
        configs = self.configs if self.configs is not None else [{}]
        if label_by is None:
            label_by = [k for k in configs[0] if len({str(c[k]) for c in configs}) > 1]
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
        for ax, name in zip(axes[0], metrics, strict=True):
            values = self.metrics[name]
            rows = values if self.configs is not None else values[None]
            for config, row in zip(configs, rows, strict=True):
                label = ", ".join(f"{k}={_fmt(config[k])}" for k in label_by) or None
                ax.plot(self.steps, row, label=label)
            ax.set_xlabel("step")
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
