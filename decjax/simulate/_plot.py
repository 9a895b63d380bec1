"""Figures of a :class:`~decjax.simulate.SimulationResult`: one panel per metric, lines grouped
by colour (``hue``) and line style (``style``) over the sweep's hyperparameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

LOG_SCALE_METRICS = ("consensus_distance", "suboptimality", "distance_to_optimum")
LINE_STYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")
_UNGROUPED = ("seed",)  # varies between runs of one setting: never a colour by default


def fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _names(value, what: str) -> list[str]:
    """``"topology"`` or ``["lr", "topology"]`` -> a list of names (a string is one name)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a hyperparameter name or a list of names, got {value!r}")
    return names


def grouping(configs: list[dict], hue, style, label_by) -> tuple[str | None, str | None, list]:
    """Which hyperparameter colours the lines, which styles them, and (without either) which
    name each line in the legend. Defaults: colour by the first hyperparameter that varies
    (seeds aside), style by the second; with three or more, one legend entry per run."""
    keys = list(configs[0])
    label_by = _names(label_by, "label_by")
    for name in [*label_by, *(n for n in (hue, style) if n is not None)]:
        if name not in keys:
            raise ValueError(f"{name!r} is not a hyperparameter of this result; have {keys}")
    if label_by and (hue is not None or style is not None):
        raise ValueError("give label_by (one legend entry per run) or hue/style, not both")
    if label_by:
        return None, None, label_by
    varying = list(_varying(configs))
    grouped = [k for k in varying if k not in _UNGROUPED]
    if hue is None and style is None:
        if len(grouped) > 2:
            return None, None, varying
        hue = grouped[0] if grouped else None
        style = grouped[1] if len(grouped) > 1 else None
    if hue is not None and hue == style:
        raise ValueError(f"hue and style must differ, both are {hue!r}")
    return hue, style, []


def _varying(configs: list[dict]) -> dict[str, int]:
    """The hyperparameters that vary across ``configs``, with how many values each takes."""
    counts = {k: len({fmt(c[k]) for c in configs}) for k in configs[0]}
    return {k: count for k, count in counts.items() if count > 1}


def title(configs: list[dict] | None, x: str) -> str:
    """What was run: how many runs, over which hyperparameters, against what."""
    against = "step" if x == "step" else f"simulated seconds ({x})"
    if not configs:
        return f"1 run, against {against}"
    over = " x ".join(f"{k} ({count})" for k, count in _varying(configs).items())
    runs = f"{len(configs)} run" + ("s" if len(configs) > 1 else "")
    return f"{runs}{': ' + over if over else ''}, against {against}"


def draw(
    metrics: dict[str, np.ndarray],
    names: Sequence[str],
    xs: np.ndarray,
    configs: list[dict],
    *,
    hue: str | None,
    style: str | None,
    label_by: list[str],
    x: str,
    suptitle: str,
):
    """The figure: one panel per metric; ``metrics[name]`` is ``(runs, records)``."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    hues = _levels(configs, hue)
    styles = _levels(configs, style)
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names) + 1.6, 3.6), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], names, strict=True):
        for c, (config, row) in enumerate(zip(configs, metrics[name], strict=True)):
            look = {}
            if hue is not None or style is not None or not label_by:
                look["color"] = colours[hues.get(fmt(config.get(hue)), 0) % len(colours)]
                look["linestyle"] = LINE_STYLES[styles.get(fmt(config.get(style)), 0) % 4]
            label = ", ".join(f"{k}={fmt(config[k])}" for k in label_by) or None
            ax.plot(xs[c % len(xs)], row, label=label, lw=1.2, **look)
        ax.set_xlabel("step" if x == "step" else f"simulated seconds ({x})")
        ax.set_title(name)
        values = np.asarray(metrics[name], dtype=float)
        if name in LOG_SCALE_METRICS and (values[np.isfinite(values)] > 0).any():
            ax.set_yscale("log")  # not when all is zero (one worker's consensus distance)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=colours[i % len(colours)], label=f"{hue}={level}")
        for level, i in hues.items()
        if hue is not None
    ] + [
        Line2D([], [], color="0.3", linestyle=LINE_STYLES[i % 4], label=f"{style}={level}")
        for level, i in styles.items()
        if style is not None
    ]
    if label_by:
        handles = axes[0][0].get_legend_handles_labels()[0]
    if handles:  # beside the panels, never over the curves
        fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def _levels(configs: list[dict], name: str | None) -> dict[str, int]:
    """Each value of hyperparameter ``name`` (formatted) -> its index, in order of appearance."""
    if name is None:
        return {}
    levels: dict[str, int] = {}
    for config in configs:
        levels.setdefault(fmt(config[name]), len(levels))
    return levels
