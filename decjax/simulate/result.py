"""What a run returns: metric arrays, a DataFrame view and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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

    def save(self, path) -> Path:
        """Write the records, the run's description and the final params (and model state)
        to one ``.npz`` file (no pickle); returns its path. See :meth:`load`."""
        from decjax.simulate import storage

        return storage.save(self, path)

    @classmethod
    def load(cls, path, *, params_like=None) -> SimulationResult:
        """A result written by :meth:`save`. Its ``state`` holds the final ``params`` and
        ``model_state`` only: as ``{tree path: array}``, or in the structure of
        ``params_like`` (the stacked params the run started from, say; checked)."""
        from decjax.simulate import storage

        return cls(**storage.load(path, params_like=params_like))

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

    def reaches(
        self,
        name: str,
        target: float,
        *,
        x: str = "time",
        above: bool = True,
        interpolate: bool = True,
    ) -> Any:
        """When metric ``name`` first reached ``target`` (``>=``; ``<=`` with ``above=False``),
        in ``x``: ``"time"`` (simulated seconds), ``"time_<label>"`` or ``"step"``; NaN where
        never.

        Linearly interpolated between the last record short of the target and the
        first that meets it, so the answer does not snap to the record grid
        (``interpolate=False``: the first record that meets it). Records start
        after the first ``eval_every`` steps, so where the first record already
        meets the target there is nothing to interpolate from: the answer is that
        record's ``x``, an upper bound (:meth:`reached_at_first_record` says where).
        A float for a single run, an array over configurations for a sweep.

        Examples:
          >>> import numpy as np, decjax
          >>> res = decjax.SimulationResult(steps=np.array([10, 20, 30]), state=None, metrics={
          ...     "test_accuracy": np.array([0.5, 0.8, 0.9]), "time": np.array([1.0, 2.0, 3.0])})
          >>> res.reaches("test_accuracy", 0.75), res.reaches("test_accuracy", 0.75, x="step")
          (1.8333333333333333, 18.333333333333332)
          >>> res.reaches("test_accuracy", 0.75, interpolate=False)
          2.0
          >>> res.reaches("test_accuracy", 0.95)  # never
          nan
        """
        values = np.atleast_2d(self._metric(name)).astype(np.float64)
        axis = np.broadcast_to(np.atleast_2d(self._axis(x)), values.shape).astype(np.float64)
        hit = values >= target if above else values <= target
        first = np.argmax(hit, axis=-1)
        found = hit.any(axis=-1)
        rows = np.arange(values.shape[0])
        out = axis[rows, first]
        if interpolate:
            before = np.maximum(first - 1, 0)
            v0, v1 = values[rows, before], values[rows, first]
            x0, x1 = axis[rows, before], axis[rows, first]
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(v1 != v0, (target - v0) / (v1 - v0), 1.0)
            share = np.where(np.isfinite(share), share, 1.0)  # a NaN record before: no bound
            out = np.where(first > 0, x0 + np.clip(share, 0.0, 1.0) * (x1 - x0), out)
        out = np.where(found, out, np.nan)
        return out if self.configs is not None else float(out[0])

    def reached_at_first_record(self, name: str, target: float, *, above: bool = True) -> Any:
        """Whether the first record already meets the target (then :meth:`reaches` is an
        upper bound: the run met it at or before that record). A bool, or an array for a
        sweep."""
        values = np.atleast_2d(self._metric(name))
        hit = values[:, 0] >= target if above else values[:, 0] <= target
        return hit if self.configs is not None else bool(hit[0])

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
        hue: str | None = None,
        style: str | None = None,
        label_by: str | Sequence[str] | None = None,
        x: str = "step",
        title: str | None = None,
    ):
        """One panel per metric against step (or simulated time); one line per configuration.

        Lines are grouped: by default the first hyperparameter that varies (seeds
        aside) sets the colour and the second the line style, and the legend names
        each value once, beside the panels. With three or more varying
        hyperparameters, or with ``label_by``, each run gets its own legend entry.

        Args:
          metrics: names to plot (default: ``train_loss``, ``consensus_distance``
            and ``test_accuracy`` where recorded).
          hue: the hyperparameter whose values get one colour each.
          style: the hyperparameter whose values get one line style each.
          label_by: instead of ``hue``/``style``, one legend entry per run naming
            these hyperparameters (a name or a list of names).
          x: ``"step"``, ``"time"`` (the simulated seconds of a run with one
            :class:`decjax.timing.TimeModel`) or ``"time_<label>"`` (one of several
            clocks); the axis label names the clock.
          title: the figure's title (default: the runs, what varies, and the x axis).

        Returns: the matplotlib Figure.

        Examples:
          >>> import numpy as np, decjax
          >>> graphs = ("ring", "complete")
          >>> configs = [{"lr": lr, "topology": t} for lr in (0.1, 0.2) for t in graphs]
          >>> res = decjax.SimulationResult(steps=np.arange(3), state=None, configs=configs,
          ...     metrics={"train_loss": np.ones((4, 3))})
          >>> fig = res.plot(["train_loss"])  # colour by lr, line style by topology
          >>> fig.get_suptitle()
          '4 runs: lr (2) x topology (2), against step'
          >>> [t.get_text() for t in fig.legends[0].get_texts()]
          ['lr=0.1', 'lr=0.2', 'topology=ring', 'topology=complete']
        """
        from decjax.simulate import _plot

        if metrics is None:
            wanted = ("train_loss", "consensus_distance", "test_accuracy")
            metrics = [m for m in wanted if m in self.metrics]
        unknown = [m for m in metrics if m not in self.metrics]
        if unknown:
            raise ValueError(f"metrics {unknown} were not recorded; have {list(self.metrics)}")
        xs = self._axis(x)
        xs = xs if self.configs is not None and xs.ndim == 2 else np.broadcast_to(xs, (1, len(xs)))
        configs = self.configs if self.configs is not None else [{}]
        hue, style, label_by = _plot.grouping(configs, hue, style, label_by)
        rows = {
            m: self.metrics[m] if self.configs is not None else self.metrics[m][None]
            for m in metrics
        }
        return _plot.draw(
            rows,
            metrics,
            xs,
            configs,
            hue=hue,
            style=style,
            label_by=label_by,
            x=x,
            suptitle=title if title is not None else _plot.title(self.configs, x),
        )
