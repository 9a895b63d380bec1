"""simulate / sweep / make_run: determinism, one compile, agreement, divergence, outputs."""

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import optax
import pytest

import decjax
from benchmarks.hlo import loop_copies

N, D = 8, 4


@pytest.fixture(scope="module")
def quad():
    return decjax.problems.quadratics(N, D, key=jax.random.key(0))


@pytest.fixture(scope="module")
def digits_setup():
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, N, "sorted", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    return ds, data, model, params


def _sim(quad, tx, **kw):
    kw = {"steps": 100, "key": jax.random.key(1), "progress": False, **kw}
    return decjax.simulate(
        quad.loss, quad.init_params(), tx, quad.data, eval_fn=quad.eval_fn, eval_workers=True, **kw
    )


def test_simulate_records_metrics_and_compiles_once(quad):
    res = _sim(quad, decjax.dpsgd(0.1, decjax.ring(N)), eval_every=10, chunks=5)
    assert res.traces == 1
    np.testing.assert_array_equal(res.steps, np.arange(10, 101, 10))
    for name in [
        "train_loss",
        "consensus_distance",
        "test_suboptimality",
        "worker_test_suboptimality",
    ]:
        assert res.metrics[name].shape == (10,)
    assert int(res.state.step) == 100


def test_simulate_matches_a_hand_written_loop(quad):
    tx = decjax.dpsgd(0.1, decjax.ring(N), momentum=0.5)
    res = _sim(quad, tx, eval_every=20)
    x, s = quad.init_params(), tx.init(quad.init_params())
    for _ in range(100):
        g = jax.vmap(jax.grad(quad.loss))(x, quad.data)
        u, s = tx.update(g, s, x)
        x = optax.apply_updates(x, u)
    np.testing.assert_allclose(res.params, x, atol=1e-5)
    np.testing.assert_allclose(
        res.metrics["consensus_distance"][-1], decjax.consensus_distance(x), rtol=1e-4
    )


def test_same_seed_same_result_and_chunking_does_not_matter(digits_setup):
    _ds, data, model, params = digits_setup
    tx = decjax.dpsgd(0.2, decjax.exponential(N))
    runs = [
        decjax.simulate(
            model.loss,
            params,
            tx,
            data,
            steps=60,
            batch_size=8,
            key=jax.random.key(2),
            eval_every=10,
            chunks=c,
            progress=False,
        )
        for c in (1, 3, 3)
    ]
    np.testing.assert_array_equal(runs[1].metrics["train_loss"], runs[2].metrics["train_loss"])
    np.testing.assert_allclose(
        runs[0].metrics["train_loss"], runs[1].metrics["train_loss"], rtol=1e-6
    )
    other = decjax.simulate(
        model.loss,
        params,
        tx,
        data,
        steps=60,
        batch_size=8,
        key=jax.random.key(3),
        eval_every=10,
        progress=False,
    )
    assert not np.allclose(other.metrics["train_loss"], runs[1].metrics["train_loss"])


def test_complete_graph_reaches_the_quadratic_optimum(quad):
    res = _sim(quad, decjax.dpsgd(0.3, decjax.complete(N)), steps=300)
    assert res.final("test_distance_to_optimum") < 1e-8
    assert res.final("consensus_distance") < 1e-10


def test_sweep_equals_individual_runs_in_one_compile(quad):
    lrs = [0.05, 0.1]
    topos = [decjax.ring(N), decjax.one_peer_exponential(N), decjax.star(N)]
    res = decjax.sweep(
        quad.loss,
        quad.init_params(),
        lambda lr, topology: decjax.dpsgd(lr, topology),
        quad.data,
        {"lr": lrs, "topology": topos},
        steps=60,
        key=jax.random.key(1),
        eval_fn=quad.eval_fn,
        progress=False,
    )
    assert res.traces == 1
    assert res.metrics["train_loss"].shape == (6, res.steps.size)
    assert [c["topology"] for c in res.configs[:3]] == ["ring", "one_peer_exponential", "star"]
    for b, config in enumerate(res.configs):
        topo = topos[[t.name for t in topos].index(config["topology"])]
        single = _sim(quad, decjax.dpsgd(config["lr"], topo), steps=60)
        np.testing.assert_allclose(
            res.metrics["test_distance_to_optimum"][b],
            single.metrics["test_distance_to_optimum"],
            rtol=1e-4,
            atol=1e-7,
            err_msg=str(config),
        )


@pytest.mark.slow
def test_sweep_without_seeds_samples_the_minibatches_simulate_samples(digits_setup):
    _, data, model, params = digits_setup
    kwargs = {"steps": 40, "batch_size": 8, "key": jax.random.key(3), "progress": False}
    lrs = [0.05, 0.2]
    res = decjax.sweep(
        model.loss,
        params,
        lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(N)),
        data,
        {"learning_rate": lrs},
        **kwargs,
    )
    for b, lr in enumerate(lrs):
        single = decjax.simulate(
            model.loss, params, decjax.dpsgd(lr, decjax.ring(N)), data, **kwargs
        )
        np.testing.assert_allclose(
            res.metrics["train_loss"][b], single.metrics["train_loss"], rtol=1e-5
        )
        for a, c in zip(jax.tree.leaves(res.params), jax.tree.leaves(single.params), strict=True):
            np.testing.assert_allclose(a[b], c, rtol=1e-4, atol=1e-6)


def test_sweep_over_seeds_and_minibatches(digits_setup):
    ds, data, model, params = digits_setup
    res = decjax.sweep(
        model.loss,
        params,
        lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(N)),
        data,
        {"learning_rate": [0.1, 0.5], "seed": [0, 1]},
        steps=40,
        batch_size=8,
        key=jax.random.key(0),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        eval_workers=True,
        progress=False,
    )
    loss = res.metrics["train_loss"]
    assert loss.shape[0] == 4 and res.traces == 1
    assert not np.allclose(loss[0], loss[1])  # different seeds differ
    df = res.to_dataframe()
    assert {"learning_rate", "seed", "step", "test_accuracy", "worker_test_accuracy"} <= set(
        df.columns
    )
    assert len(df) == 4 * res.steps.size


def test_divergence_raise_stop_and_sweep_flags(quad):
    with pytest.raises(FloatingPointError, match="diverged"):
        _sim(quad, decjax.dpsgd(5.0, decjax.ring(N)), steps=200, eval_every=10)
    res = _sim(
        quad, decjax.dpsgd(5.0, decjax.ring(N)), steps=200, eval_every=10, on_divergence="stop"
    )
    assert res.diverged is True
    assert not np.isfinite(res.metrics["train_loss"][-1])
    assert np.isfinite(res.metrics["train_loss"][:-1]).all()
    sw = decjax.sweep(
        quad.loss,
        quad.init_params(),
        lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
        quad.data,
        {"lr": [0.1, 5.0]},
        steps=200,
        eval_every=10,
        key=jax.random.key(0),
        progress=False,
    )
    assert sw.diverged.tolist() == [False, True]
    assert np.isfinite(sw.metrics["train_loss"][0]).all()


def test_make_run_is_a_pure_vmappable_core(quad):
    run = decjax.make_run(
        quad.loss,
        lambda lr: decjax.dpsgd(lr, decjax.complete(N)),
        steps=50,
        eval_every=10,
        eval_fn=quad.eval_fn,
    )
    _state, metrics = jax.jit(jax.vmap(run, in_axes=(None, None, None, None, 0)))(
        quad.init_params(), jax.random.key(0), quad.data, None, {"lr": jnp.array([0.01, 0.3])}
    )
    d = metrics["test_distance_to_optimum"]
    assert d.shape == (2, 5)
    assert d[1, -1] < d[0, -1]


def test_result_dataframe_and_plot(quad):
    res = _sim(quad, decjax.dpsgd(0.1, decjax.ring(N)))
    df = res.to_dataframe()
    assert list(df["step"]) == list(res.steps)
    fig = res.plot(["train_loss", "consensus_distance"])
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    with pytest.raises(ValueError, match="not recorded"):
        res.plot(["test_accuracy"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"batch_size": 4}, ValueError, "batch_size applies to WorkerData"),
        ({"on_divergence": "panic"}, ValueError, "on_divergence must be one of"),
        ({"chunks": 7}, ValueError, "chunks"),
        ({"eval_fn": 3}, TypeError, "eval_fn must be callable"),
        (
            {"steps_per_iteration": 0},
            ValueError,
            "steps_per_iteration must be a positive int or 'auto'",
        ),
        ({"worker_chunks": 3}, ValueError, r"worker_chunks \(3\) must divide"),
    ],
)
def test_simulate_rejects_bad_arguments(quad, kwargs, error, message):
    kw = {"steps": 100, "key": jax.random.key(0), "progress": False, **kwargs}
    with pytest.raises(error, match=message):
        decjax.simulate(
            quad.loss, quad.init_params(), decjax.dpsgd(0.1, decjax.ring(N)), quad.data, **kw
        )


def test_simulate_rejects_unstacked_params_and_missing_batch_size(quad, digits_setup):
    with pytest.raises(ValueError, match="stacked over workers"):
        decjax.simulate(
            quad.loss,
            {"a": jnp.zeros(3), "b": jnp.zeros((4, 3))},
            decjax.dpsgd(0.1, decjax.ring(N)),
            quad.data,
            steps=10,
            key=jax.random.key(0),
        )
    _ds, data, model, params = digits_setup
    with pytest.raises(ValueError, match="batch_size is required"):
        decjax.simulate(
            model.loss,
            params,
            decjax.dpsgd(0.1, decjax.ring(N)),
            data,
            steps=10,
            key=jax.random.key(0),
        )
    with pytest.raises(TypeError, match="tx must be an optax"):
        decjax.simulate(model.loss, params, "sgd", data, steps=10, key=jax.random.key(0))


@pytest.mark.parametrize(
    ("grid", "error", "message"),
    [
        ({}, TypeError, "non-empty mapping"),
        ({"lr": []}, ValueError, "non-empty list"),
        ({"lr": ["a"]}, TypeError, "only numbers or only Topology"),
        ({"topology": [decjax.ring(5)]}, ValueError, "n=8"),
        ({"seed": [0.5]}, ValueError, "integers >= 0"),
    ],
)
def test_sweep_rejects_bad_grids(quad, grid, error, message):
    with pytest.raises(error, match=message):
        decjax.sweep(
            quad.loss,
            quad.init_params(),
            lambda **kw: decjax.dpsgd(0.1, decjax.ring(N)),
            quad.data,
            grid,
            steps=10,
            key=jax.random.key(0),
            progress=False,
        )


def test_sweep_validates_every_concrete_configuration_before_compiling(quad):
    """D² rejects an even ring (lambda_min = -1/3) even though the sweep stacks topologies."""
    with pytest.raises(ValueError, match=r"lambda_min\(W\) > -1/3"):
        decjax.sweep(
            quad.loss,
            quad.init_params(),
            lambda topology: decjax.d2(0.1, topology),
            quad.data,
            {"topology": [decjax.topology.lazy(decjax.ring(N), 0.5), decjax.ring(N)]},
            steps=10,
            key=jax.random.key(0),
            progress=False,
        )


@pytest.mark.parametrize("full_batch", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_worker_chunks_give_the_same_run(full_batch, quad, digits_setup):
    if full_batch:
        loss, params, data, kw = quad.loss, quad.init_params(), quad.data, {}
    else:
        _, data, model, params = digits_setup
        loss, kw = model.loss, {"batch_size": 8}
    runs = [
        decjax.simulate(
            loss,
            params,
            decjax.dpsgd(0.1, decjax.ring(N)),
            data,
            steps=20,
            eval_every=10,
            key=jax.random.key(0),
            worker_chunks=c,
            progress=False,
            **kw,
        )
        for c in (1, 4)
    ]
    np.testing.assert_allclose(
        runs[1].metrics["train_loss"], runs[0].metrics["train_loss"], rtol=1e-6
    )
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="worker_chunks"):
        decjax.simulate(
            loss,
            params,
            decjax.dpsgd(0.1, decjax.ring(N)),
            data,
            steps=10,
            key=jax.random.key(0),
            worker_chunks=3,
            progress=False,
            **kw,
        )


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [decjax.dpsgd, decjax.gradient_tracking])
def test_two_steps_per_loop_iteration_remove_the_copy_of_the_params(algorithm, digits_setup):
    _, data, model, params = digits_setup
    weights = max(jax.tree.leaves(params), key=lambda x: x.size).shape  # (n, 64, 10)

    def compiled(steps_per_iteration):
        run = decjax.make_run(
            model.loss,
            algorithm(0.1, decjax.ring(N)),
            steps=8,
            eval_every=4,
            batch_size=8,
            steps_per_iteration=steps_per_iteration,
        )
        return jax.jit(run).lower(params, jax.random.key(0), data).compile()

    # one step per iteration: the gossiped params go to a fresh buffer, copied back
    assert loop_copies(compiled(1), weights) >= 1
    assert loop_copies(compiled(2), weights) == 0


@pytest.mark.slow
@pytest.mark.parametrize("eval_every", [4, 5])  # 5: two steps per iteration, plus one
def test_steps_per_iteration_give_the_same_run(eval_every, digits_setup):
    _, data, model, params = digits_setup
    runs = [
        decjax.simulate(
            model.loss,
            params,
            decjax.gradient_tracking(0.1, decjax.ring(N)),
            data,
            steps=4 * eval_every,
            eval_every=eval_every,
            batch_size=8,
            key=jax.random.key(0),
            steps_per_iteration=u,
            progress=False,
        )
        for u in (1, 2, 3)
    ]
    for other in runs[1:]:
        np.testing.assert_allclose(
            other.metrics["train_loss"], runs[0].metrics["train_loss"], rtol=1e-5
        )
        for a, b in zip(
            jax.tree.leaves(runs[0].params), jax.tree.leaves(other.params), strict=True
        ):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_divergence_names_the_exact_step_and_stop_keeps_the_last_finite_state(quad):
    """Oracle: the same run recording every step shows where the loss first goes non-finite;
    a run recording every 50 steps must report that step, not its record's end (a NaN at
    step 10 used to be reported "at step 100")."""
    tx = decjax.dpsgd(5.0, decjax.ring(N))
    every_step = _sim(quad, tx, steps=200, eval_every=1, on_divergence="ignore")
    first = int(np.argmin(np.isfinite(every_step.metrics["train_loss"]))) + 1
    assert 1 < first < 150
    with pytest.raises(FloatingPointError, match=f"diverged at step {first}:"):
        _sim(quad, tx, steps=200, eval_every=50)
    stopped = _sim(quad, tx, steps=200, eval_every=50, on_divergence="stop")
    assert stopped.diverged is True and stopped.diverged_at == first
    last_good = (first - 1) // 50 * 50  # the last record before the bad one
    assert int(stopped.state.step) == last_good
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(stopped.params))
    finite = _sim(quad, tx, steps=last_good, eval_every=50) if last_good else None
    if finite is not None:
        np.testing.assert_array_equal(stopped.params, finite.params)


def test_a_sweep_takes_numpy_arrays_as_its_grid_values(quad):
    """np.array values stand for their elements (they were refused): the same runs as lists."""
    common = {"steps": 4, "eval_every": 2, "key": jax.random.key(0), "progress": False}

    def run(grid):
        return decjax.sweep(
            quad.loss,
            quad.init_params(),
            lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(N)),
            quad.data,
            grid,
            **common,
        )

    arrays = run({"learning_rate": np.array([0.05, 0.1]), "seed": np.arange(2)})
    lists = run({"learning_rate": [0.05, 0.1], "seed": [0, 1]})
    assert arrays.configs == lists.configs
    np.testing.assert_array_equal(arrays.metrics["train_loss"], lists.metrics["train_loss"])


def test_steps_past_the_last_whole_record_make_a_shorter_last_record(quad):
    """100 steps recorded every 30: records at 30, 60, 90 and 100; the run is the same
    as 100 steps recorded every 10 (one compile more); also in a sweep, and with fewer
    steps than eval_every (one record)."""
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    calls = []
    odd = _sim(quad, tx, eval_every=30, callback=lambda step, m: calls.append(step))
    fine = _sim(quad, tx, eval_every=10)
    np.testing.assert_array_equal(odd.steps, [30, 60, 90, 100])
    assert calls[-1] == 100 and odd.traces == 2
    for got, want in zip(jax.tree.leaves(odd.params), jax.tree.leaves(fine.params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        odd.metrics["consensus_distance"],
        fine.metrics["consensus_distance"][[2, 5, 8, 9]],
        rtol=1e-5,
    )
    # the last record's training loss is the mean over its own 10 steps
    np.testing.assert_allclose(
        odd.metrics["train_loss"][-1], fine.metrics["train_loss"][-1], rtol=1e-5
    )
    sweep = decjax.sweep(
        quad.loss,
        quad.init_params(),
        lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
        quad.data,
        {"lr": [0.05, 0.1]},
        steps=25,
        eval_every=10,
        key=jax.random.key(1),
        progress=False,
    )
    np.testing.assert_array_equal(sweep.steps, [10, 20, 25])
    assert sweep.metrics["train_loss"].shape == (2, 3)
    short = _sim(quad, tx, steps=7, eval_every=10)
    np.testing.assert_array_equal(short.steps, [7])
