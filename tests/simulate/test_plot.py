"""SimulationResult.plot: lines grouped by colour and style, one legend beside the panels."""

import matplotlib
import numpy as np
import pytest

import decjax

matplotlib.use("Agg")


def _result(grid: dict, metrics=("train_loss",), clocks=()):
    """A sweep-shaped result over the product of ``grid`` (no training needed)."""
    import itertools

    configs = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    steps = np.arange(4)
    values = {m: np.arange(len(configs))[:, None] + steps[None] * 0.1 for m in metrics}
    for label in clocks:
        values[f"time_{label}"] = np.tile(
            steps * (2.0 if label == "slow" else 1.0), (len(configs), 1)
        )
    return decjax.SimulationResult(steps=steps, metrics=values, state=None, configs=configs)


def _looks(ax):
    return [(line.get_color(), line.get_linestyle()) for line in ax.lines]


def _legend(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_colour_by_the_first_varying_hyperparameter_and_style_by_the_second():
    res = _result({"lr": [0.1, 0.2], "topology": ["ring", "complete"], "seed": [0, 1, 2]})
    fig = res.plot(["train_loss"])
    looks = _looks(fig.axes[0])
    assert len(looks) == 12
    # runs that differ only in seed look the same; lr sets the colour, topology the style
    by_config = dict(zip([(c["lr"], c["topology"]) for c in res.configs], looks, strict=True))
    assert len(set(by_config.values())) == 4
    assert by_config[(0.1, "ring")][0] == by_config[(0.1, "complete")][0]
    assert by_config[(0.1, "ring")][0] != by_config[(0.2, "ring")][0]
    assert by_config[(0.1, "ring")][1] == by_config[(0.2, "ring")][1] == "-"
    assert by_config[(0.1, "complete")][1] == "--"
    assert _legend(fig) == ["lr=0.1", "lr=0.2", "topology=ring", "topology=complete"]
    assert fig.axes[0].get_legend() is None  # beside the panels, not over the curves
    assert fig.get_suptitle() == "12 runs: lr (2) x topology (2) x seed (3), against step"


def test_hue_and_style_choose_the_grouping():
    res = _result({"lr": [0.1, 0.2, 0.4], "topology": ["ring", "complete"]})
    fig = res.plot(["train_loss"], hue="topology", style="lr", title="my sweep")
    pairs = list(zip(res.configs, _looks(fig.axes[0]), strict=True))
    colours = {c["topology"]: look[0] for c, look in pairs}
    styles = {c["lr"]: look[1] for c, look in pairs}
    assert len(set(colours.values())) == 2 and list(styles.values()) == ["-", "--", ":"]
    assert _legend(fig)[:2] == ["topology=ring", "topology=complete"]
    assert fig.get_suptitle() == "my sweep"


def test_label_by_a_single_name_labels_every_run():
    res = _result({"lr": [0.1, 0.2], "topology": ["ring", "complete"]})
    fig = res.plot(["train_loss"], label_by="topology")  # a string is one name, not letters
    assert _legend(fig) == ["topology=ring", "topology=complete"] * 2


def test_three_varying_hyperparameters_get_one_legend_entry_per_run():
    res = _result({"lr": [0.1, 0.2], "topology": ["ring", "star"], "momentum": [0.0, 0.9]})
    fig = res.plot(["train_loss"])
    assert len(_legend(fig)) == 8
    assert _legend(fig)[0] == "lr=0.1, topology=ring, momentum=0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"hue": "lrr"},
            r"'lrr' is not a hyperparameter of this result; have \['lr', 'topology'\]",
        ),
        ({"hue": "lr", "style": "lr"}, "hue and style must differ"),
        ({"hue": "lr", "label_by": "topology"}, "not both"),
        ({"label_by": ["topology", 3]}, "label_by must be a hyperparameter name"),
    ],
)
def test_bad_grouping_is_refused_in_one_line(kwargs, message):
    res = _result({"lr": [0.1, 0.2], "topology": ["ring", "complete"]})
    with pytest.raises((ValueError, TypeError), match=message):
        res.plot(["train_loss"], **kwargs)


def test_several_clocks_name_the_clock_on_the_axis():
    res = _result({"lr": [0.1, 0.2]}, clocks=("fast", "slow"))
    fig = res.plot(["train_loss"], x="time_slow")
    assert fig.axes[0].get_xlabel() == "simulated seconds (time_slow)"
    np.testing.assert_allclose(fig.axes[0].lines[1].get_xdata(), 2.0 * np.arange(4))
    assert fig.get_suptitle() == "2 runs: lr (2), against simulated seconds (time_slow)"
    with pytest.raises(ValueError, match=r"recorded: \['time_fast', 'time_slow'\]"):
        res.plot(["train_loss"], x="time")


def test_a_single_run_has_no_legend():
    res = decjax.SimulationResult(
        steps=np.arange(3), metrics={"train_loss": np.ones(3)}, state=None
    )
    fig = res.plot()
    assert fig.legends == [] and fig.get_suptitle() == "1 run, against step"


def test_reaches_interpolates_between_records_and_flags_a_first_record_hit():
    acc = np.array(
        [[0.2, 0.5, 0.7, 0.6, 0.9], [0.8, 0.85, 0.9, 0.95, 0.97], [0.1, 0.2, 0.3, 0.3, 0.4]]
    )
    time = np.array([[1.0, 3.0, 4.0, 6.0, 7.0]] * 3) * np.array([[1.0], [2.0], [1.0]])
    res = decjax.SimulationResult(
        steps=np.arange(1, 6) * 10,
        metrics={"test_accuracy": acc, "time": time},
        state=None,
        configs=[{"run": 0}, {"run": 1}, {"run": 2}],
    )
    # run 0 crosses 0.6 between 3 s (0.5) and 4 s (0.7): 3 + (0.6 - 0.5) / 0.2 = 3.5
    got = res.reaches("test_accuracy", 0.6)
    assert got[0] == pytest.approx(3.5)
    assert got[1] == 2.0 and np.isnan(got[2])  # at the first record (2 s); never
    np.testing.assert_array_equal(res.reached_at_first_record("test_accuracy", 0.6), [0, 1, 0])
    # steps: 20 + 0.5 * 10; without interpolation the first record that meets it
    assert res.reaches("test_accuracy", 0.6, x="step")[0] == pytest.approx(25.0)
    assert res.reaches("test_accuracy", 0.6, interpolate=False)[0] == 4.0
    # the first crossing counts (0.65 is met at 4 s, lost at 6 s, met again at 7 s)
    assert res.reaches("test_accuracy", 0.65)[0] == pytest.approx(3.75)
    # below a target: loss-like metrics
    assert res.reaches("test_accuracy", 0.25, above=False)[2] == 1.0
    assert res.reaches("test_accuracy", 0.15, above=False)[2] == 1.0
    assert np.isnan(res.reaches("test_accuracy", 0.05, above=False)[2])
