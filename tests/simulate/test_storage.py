"""Results that last (save / load, no pickle) and a progress bar that shows the metrics."""

import zipfile

import jax
import numpy as np
import optax
import pytest

import decjax
from decjax.simulate import storage
from decjax.simulate._loop import shown

N = 4


@pytest.fixture(scope="module")
def digits():
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, N, "iid", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    common = {
        "steps": 20,
        "eval_every": 10,
        "batch_size": 8,
        "key": jax.random.key(1),
        "eval_fn": model.eval_fn,
        "eval_data": (ds.x_test, ds.y_test),
        "progress": False,
    }
    return model, params, data, common


def test_a_sweep_saves_and_loads_with_its_records_configs_and_params(digits, tmp_path):
    model, params, data, common = digits
    grid = {"lr": [0.05, 0.1], "topology": [decjax.ring(N), decjax.complete(N)]}
    res = decjax.sweep(
        model.loss, params, lambda lr, topology: decjax.dpsgd(lr, topology), data, grid, **common
    )
    path = res.save(tmp_path / "sweep")
    assert path.name == "sweep.npz"
    back = decjax.SimulationResult.load(path, params_like=params)
    np.testing.assert_array_equal(back.steps, res.steps)
    assert back.metrics.keys() == res.metrics.keys()
    for name in res.metrics:
        np.testing.assert_array_equal(back.metrics[name], res.metrics[name])
    assert back.configs == res.configs and back.configs[1]["topology"] == "complete"
    np.testing.assert_array_equal(back.diverged, res.diverged)
    assert back.traces == res.traces == 1
    for got, want in zip(jax.tree.leaves(back.params), jax.tree.leaves(res.params), strict=True):
        np.testing.assert_array_equal(got, want)  # (configs, n, ...) for a sweep
    assert back.to_dataframe().equals(res.to_dataframe())
    assert back.reaches("test_accuracy", 0.5, x="step").shape == (4,)
    # no pickle anywhere: every entry loads with allow_pickle=False
    with np.load(path, allow_pickle=False) as stored:
        assert "metric/train_loss" in stored.files


def test_a_single_run_loads_without_a_template_as_named_leaves(digits, tmp_path):
    model, params, data, common = digits
    res = decjax.simulate(model.loss, params, decjax.dpsgd(0.1, decjax.ring(N)), data, **common)
    back = decjax.SimulationResult.load(res.save(tmp_path / "one.npz"))
    assert back.configs is None and back.diverged is False and back.diverged_at is None
    paths = jax.tree_util.tree_flatten_with_path(res.params)[0]
    assert list(back.params) == [jax.tree_util.keystr(path) for path, _ in paths]
    leaves = dict(zip(back.params, jax.tree.leaves(res.params), strict=True))
    for name, leaf in leaves.items():
        np.testing.assert_array_equal(back.params[name], leaf)
    assert back.final("test_accuracy") == res.final("test_accuracy")


def test_loading_refuses_another_structure_and_a_foreign_file(digits, tmp_path):
    model, params, data, common = digits
    res = decjax.simulate(model.loss, params, decjax.dpsgd(0.1, decjax.ring(N)), data, **common)
    path = res.save(tmp_path / "one")
    wrong = jax.tree.map(lambda x: x[:, :1], params)
    with pytest.raises(ValueError, match=r"params_like\S* is \(\(4, 1"):
        decjax.SimulationResult.load(path, params_like=wrong)
    with pytest.raises(ValueError, match="structure"):
        decjax.SimulationResult.load(path, params_like={"w": params})
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz is not a saved decjax result"):
        decjax.SimulationResult.load(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(ValueError, match="is not a saved decjax result"):
        decjax.SimulationResult.load(tmp_path / "empty.npz")


def test_a_config_value_that_is_not_a_number_or_string_is_refused(tmp_path):
    res = decjax.SimulationResult(
        steps=np.arange(2),
        metrics={"train_loss": np.ones((1, 2))},
        state=None,
        configs=[{"schedule": object()}],
    )
    with pytest.raises(TypeError, match=r"configs\[0\]\['schedule'\] is a object"):
        storage.save(res, tmp_path / "x")


def test_the_progress_bar_shows_loss_accuracy_and_consensus(digits, capsys):
    host = {
        "train_loss": np.array([[0.5, 0.4], [0.7, np.nan]]),
        "test_accuracy": np.array([[0.8, 0.9], [0.6, 0.7]]),
        "consensus_distance": np.array([[1e-3, 2e-3], [1e-3, 4e-3]]),
    }
    assert shown(host) == {"loss": "0.4", "acc": "0.8", "consensus": "0.003"}
    assert shown({"train_loss": np.array([np.nan])}) == {"loss": "non-finite"}
    model, params, data, common = digits
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    decjax.simulate(model.loss, params, tx, data, **{**common, "progress": True})
    bar = capsys.readouterr().err
    assert "loss=" in bar and "acc=" in bar and "consensus=" in bar


def test_compare_puts_a_run_and_a_sweep_of_other_algorithms_in_one_result(digits):
    model, params, data, common = digits
    clock = decjax.timing.TimeModel(decjax.timing.Network(1e-3), compute=0.01)
    sweep = decjax.sweep(
        model.loss,
        params,
        lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
        data,
        {"lr": [0.05, 0.1]},
        **common,
    )
    diloco = decjax.simulate(
        model.loss, params, decjax.diloco(optax.sgd(0.1), every=5), data, timing=clock, **common
    )
    res = decjax.compare({"D-PSGD, ring": sweep, "DiLoCo": diloco})
    assert res.configs == [
        {"run": "D-PSGD, ring", "lr": 0.05},
        {"run": "D-PSGD, ring", "lr": 0.1},
        {"run": "DiLoCo", "lr": None},
    ]
    np.testing.assert_array_equal(res.metrics["train_loss"][:2], sweep.metrics["train_loss"])
    np.testing.assert_array_equal(res.metrics["train_loss"][2], diloco.metrics["train_loss"])
    # the clock only DiLoCo had: NaN for the others, so time to target is NaN there
    assert np.isnan(res.metrics["time"][:2]).all()
    np.testing.assert_array_equal(res.metrics["time"][2], diloco.metrics["time"])
    assert np.isnan(res.reaches("test_accuracy", 0.1)[:2]).all()
    assert res.traces == sweep.traces + diloco.traces
    assert set(res.state) == {"D-PSGD, ring", "DiLoCo"}
    assert len(res.to_dataframe()) == 3 * len(res.steps)
    fig = res.plot(["train_loss"])  # coloured by run, styled by lr
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == [
        "run=D-PSGD, ring",
        "run=DiLoCo",
    ]


def test_compare_refuses_other_record_steps_and_pads_a_stopped_run():
    def result(steps, loss):
        return decjax.SimulationResult(
            steps=np.array(steps), metrics={"train_loss": np.array(loss, float)}, state=None
        )

    with pytest.raises(ValueError, match=r"records at steps \[5, 10\], another at \[10, 20\]"):
        decjax.compare({"a": result([10, 20], [1, 2]), "b": result([5, 10], [1, 2])})
    res = decjax.compare({"a": result([10, 20, 30], [3, 2, 1]), "stopped": result([10], [4])})
    np.testing.assert_array_equal(res.metrics["train_loss"][1], [4, np.nan, np.nan])
    with pytest.raises(TypeError, match=r"results\['x'\] is a dict"):
        decjax.compare({"x": {}})
    with pytest.raises(ValueError, match="non-empty"):
        decjax.compare({})
