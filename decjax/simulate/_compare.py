"""Comparing runs that cannot share one sweep (another algorithm, model or clock): one
:class:`~decjax.simulate.SimulationResult` whose configurations are labelled runs."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from decjax.simulate.result import SimulationResult


def compare(results: Mapping[str, SimulationResult], *, name: str = "run") -> SimulationResult:
    """Labelled results as one result, as if one sweep had run them all.

    Every configuration of every result becomes one configuration here, with
    ``name`` set to its label and its own hyperparameters beside it (``None``
    where a result has no such hyperparameter), so ``to_dataframe``, ``plot``
    (colour by label) and ``reaches`` work across all of them. Records are
    aligned by step: every result must record at the same steps (one that
    stopped early is padded with NaN); a metric one result lacks is NaN there.
    ``state`` is ``{label: that result's final state}``.

    Example::

        res = decjax.compare({"D-PSGD, ring": dpsgd_sweep, "DiLoCo, H = 8": diloco_run})
        res.plot(["test_accuracy"], x="time")
        res.to_dataframe()
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("compare takes a non-empty {label: SimulationResult} dict")
    for label, result in results.items():
        if not isinstance(result, SimulationResult):
            raise TypeError(f"results[{label!r}] is a {type(result).__name__}, not a result")
    steps = max((r.steps for r in results.values()), key=len)
    for label, result in results.items():
        if not np.array_equal(result.steps, steps[: len(result.steps)]):
            raise ValueError(
                f"results[{label!r}] records at steps {_show(result.steps)}, another at "
                f"{_show(steps)}: give every run the same eval_every"
            )
    rows: list[tuple[SimulationResult, int | None]] = []
    configs, diverged, traces, wall = [], [], 0, 0.0
    own = dict.fromkeys(k for r in results.values() for c in r.configs or [] for k in c)
    keys = [name, *own]  # in order of first appearance
    for label, result in results.items():
        runs = result.configs if result.configs is not None else [{}]
        for i, config in enumerate(runs):
            configs.append({k: config.get(k) for k in keys} | {name: label})
            rows.append((result, i if result.configs is not None else None))
            diverged.append(bool(np.atleast_1d(result.diverged)[i if result.configs else 0]))
        traces += result.traces
        wall += result.wall_time
    names = list(dict.fromkeys(m for r in results.values() for m in r.metrics))
    metrics = {m: np.full((len(rows), len(steps)), np.nan) for m in names}
    for row, (result, index) in enumerate(rows):
        for m, values in result.metrics.items():
            values = np.asarray(values, dtype=float)
            record = values if index is None else values[index]
            metrics[m][row, : len(record)] = record
    return SimulationResult(
        steps=steps,
        metrics=metrics,
        state={label: result.state for label, result in results.items()},
        configs=configs,
        diverged=np.array(diverged),
        traces=traces,
        wall_time=wall,
    )


def _show(steps: np.ndarray) -> str:
    head = ", ".join(str(int(s)) for s in steps[:3])
    return f"[{head}{', ...' if len(steps) > 3 else ''}]"
