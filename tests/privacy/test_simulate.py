"""DP-SGD inside simulate and sweep: the Poisson sample against a loop over its examples, the
noise's law and keys, the accountant's records, the budget, sharding, and the refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax import privacy
from decjax.distributed import worker_mesh
from decjax.privacy import poisson
from decjax.privacy.mechanism import add_noise, clip_per_example, per_example_gradients

N = 8


@pytest.fixture(scope="module")
def task():
    ds = decjax.data.load_digits()
    model = decjax.problems.mlp([64, 16, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    data = decjax.data.distribute(ds, N, "dirichlet", alpha=0.5, key=0)
    return ds, model, params, data


def _w(params):
    return np.asarray(jax.tree.leaves(params)[0])


def _full_batch(ds, per_worker=20):
    x = jnp.asarray(ds.x_train[: N * per_worker]).reshape(N, per_worker, -1)
    y = jnp.asarray(ds.y_train[: N * per_worker]).reshape(N, per_worker)
    return x, y


def test_the_poisson_sample_equals_a_loop_over_its_examples_in_several_passes(task, monkeypatch):
    _, model, params, data = task
    one = jax.tree.map(lambda x: x[0], params)
    indices, count = data.indices[3], int(data.counts[3])
    key, noise_key = jax.random.key(5), jax.random.key(6)
    monkeypatch.setattr(poisson, "capacity", lambda expected, slots: 3)  # several passes
    loss, got = poisson.poisson_private_gradient(
        model.loss,
        one,
        data.x,
        data.y,
        indices,
        count,
        key,
        noise_key,
        expected_batch=12,
        clip_norm=0.5,
        noise_multiplier=0.7,
    )
    chosen = np.flatnonzero(poisson.poisson_mask(key, count, indices.shape[0], 12 / count))
    assert 3 < chosen.size and chosen.max() < count
    rows = np.asarray(indices)[chosen]
    batch = (data.x[rows], data.y[rows])
    clipped = clip_per_example(per_example_gradients(model.loss, one, batch), 0.5)
    want = add_noise(jax.tree.map(lambda g: g.sum(0) / 12, clipped), noise_key, 0.7 * 0.5 / 12)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)
    losses = [float(model.loss(one, (data.x[r : r + 1], data.y[r : r + 1]))) for r in rows]
    np.testing.assert_allclose(float(loss), np.mean(losses), rtol=1e-5)


def test_every_example_is_in_the_sample_with_probability_q_and_padding_never():
    keys = jax.random.split(jax.random.key(0), 4000)
    masks = jax.vmap(lambda k: poisson.poisson_mask(k, 30, 40, 0.2))(keys)
    freq = np.asarray(masks).mean(0)
    assert np.all(freq[30:] == 0)
    se = np.sqrt(0.2 * 0.8 / 4000)
    assert np.all(np.abs(freq[:30] - 0.2) < 5 * se)
    sizes = np.asarray(masks).sum(1)
    assert abs(sizes.var() - 30 * 0.2 * 0.8) < 0.1 * 30 * 0.2 * 0.8  # Binomial(30, 0.2)


def _sim(model, params, data, ds, **kwargs):
    kwargs = {"steps": 40, "key": jax.random.key(1), "progress": False, **kwargs}
    kwargs.setdefault("eval_every", min(20, kwargs["steps"]))
    return decjax.simulate(
        model.loss,
        params,
        decjax.dpsgd(0.1, decjax.ring(N)),
        data,
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        **kwargs,
    )


def test_full_batch_records_the_gaussian_mechanisms_epsilon(task):
    ds, model, params, _ = task
    res = _sim(
        model,
        params,
        _full_batch(ds),
        ds,
        steps=100,
        eval_every=25,
        privacy=privacy.Clip(1.0, noise_multiplier=10.0),
    )
    np.testing.assert_array_equal(res.steps, [25, 50, 75, 100])
    assert round(float(res.metrics["epsilon"][-1]), 4) == 4.3772
    assert np.all(np.diff(res.metrics["epsilon"]) > 0)


def test_without_clipping_or_noise_it_is_the_plain_full_batch_run(task):
    """Per-example gradients are summed in another order than the batch gradient's
    backward pass: the runs agree to float32 rounding, not bit for bit."""
    ds, model, params, _ = task
    data = _full_batch(ds)
    plain = _sim(model, params, data, ds, steps=200)
    private = _sim(model, params, data, ds, steps=200, privacy=privacy.Clip(float("inf")))
    np.testing.assert_allclose(_w(private.params), _w(plain.params), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        private.metrics["train_loss"], plain.metrics["train_loss"], rtol=1e-5
    )
    assert np.all(np.isinf(private.metrics["epsilon"]))


def test_the_noise_is_per_worker_with_std_sigma_c_over_b_and_independent_of_the_sample(task):
    ds, model, params, data = task
    lr, clip, sigma, batch = 0.1, 0.5, 3.0, 8
    quiet = _sim(model, params, data, ds, steps=1, batch_size=batch, privacy=privacy.Clip(clip))
    noisy = _sim(
        model,
        params,
        data,
        ds,
        steps=1,
        batch_size=batch,
        privacy=privacy.Clip(clip, noise_multiplier=sigma),
    )
    # one step of D-PSGD: x' = W (x - lr g); W is invertible on a ring of 8 (1/3 weights)
    w = np.asarray(decjax.ring(N).matrix(), np.float64)
    diff = (
        np.linalg.solve(
            w, np.asarray(_w(noisy.params) - _w(quiet.params), np.float64).reshape(N, -1)
        )
        / -lr
    )
    np.testing.assert_allclose(diff.std(), sigma * clip / batch, rtol=0.03)
    assert abs(diff.mean()) < 0.05 * sigma * clip / batch
    assert np.abs(np.corrcoef(diff)[np.triu_indices(N, 1)]).max() < 0.1  # per worker


@pytest.mark.slow
def test_same_key_same_noise_and_a_sharded_run_agrees(task):
    ds, model, params, data = task
    clip = privacy.Clip(1.0, noise_multiplier=1.0)
    a = _sim(model, params, data, ds, batch_size=8, privacy=clip)
    b = _sim(model, params, data, ds, batch_size=8, privacy=clip)
    np.testing.assert_array_equal(_w(a.params), _w(b.params))
    other = _sim(model, params, data, ds, batch_size=8, privacy=clip, key=jax.random.key(2))
    assert not np.allclose(_w(other.params), _w(a.params))
    sharded = _sim(model, params, data, ds, batch_size=8, privacy=clip, mesh=worker_mesh())
    np.testing.assert_allclose(_w(sharded.params), _w(a.params), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sharded.metrics["epsilon"], a.metrics["epsilon"])
    chunked = _sim(model, params, data, ds, batch_size=8, privacy=clip, worker_chunks=4)
    np.testing.assert_allclose(_w(chunked.params), _w(a.params), rtol=1e-4, atol=1e-5)


def test_the_records_use_the_smallest_shards_sampling_rate(task):
    ds, model, params, data = task
    clip = privacy.Clip(1.0, noise_multiplier=2.0, accountant="rdp")
    res = _sim(model, params, data, ds, batch_size=8, privacy=clip, eval_every=20)
    rate = 8 / int(np.min(data.counts))
    np.testing.assert_allclose(res.metrics["epsilon"], clip.epsilons([20, 40], rate))
    assert clip.epsilon(40, rate) > clip.epsilon(40, 8 / int(np.max(data.counts)))


@pytest.mark.slow
def test_the_budget_ends_simulate_where_it_is_spent(task):
    ds, model, params, data = task
    clip = privacy.Clip(1.0, noise_multiplier=1.5, epsilon_budget=3.0, accountant="rdp")
    rate = 8 / int(np.min(data.counts))
    res = _sim(model, params, data, ds, batch_size=8, privacy=clip, steps=400)
    last = int(res.steps[-1])
    assert last < 400
    assert res.metrics["epsilon"][-1] <= 3.0 < clip.epsilon(last + 1, rate)


@pytest.mark.slow
def test_a_sweep_over_noise_records_each_epsilon_and_freezes_at_its_budget(task):
    ds, model, params, data = task
    clip = privacy.Clip(1.0, epsilon_budget=4.0, accountant="rdp")
    res = decjax.sweep(
        model.loss,
        params,
        lambda lr: decjax.dpsgd(lr, decjax.ring(N)),
        data,
        {"lr": [0.1], "noise_multiplier": [1.0, 4.0]},
        steps=60,
        eval_every=20,
        batch_size=8,
        key=jax.random.key(1),
        progress=False,
        privacy=clip,
    )
    rate = 8 / int(np.min(data.counts))
    short = clip.with_values(noise_multiplier=1.0)
    stop = short.steps_allowed(60, rate)
    assert stop < 60
    np.testing.assert_allclose(
        res.metrics["epsilon"][0],
        short.epsilons([20, 40, 60], rate).clip(max=short.epsilon(stop, rate)),
    )
    long = clip.with_values(noise_multiplier=4.0)
    np.testing.assert_allclose(res.metrics["epsilon"][1], long.epsilons([20, 40, 60], rate))
    alone = _sim(model, params, data, ds, batch_size=8, steps=stop, privacy=short)
    np.testing.assert_allclose(_w(res.state.params)[0], _w(alone.params), rtol=1e-4, atol=1e-5)
    full = _sim(
        model,
        params,
        data,
        ds,
        batch_size=8,
        steps=60,
        privacy=dataclasses.replace(long, epsilon_budget=None),
    )
    np.testing.assert_allclose(_w(res.state.params)[1], _w(full.params), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_stateful_model_without_state_gets_a_key_per_example(task):
    ds, model, params, data = task

    def dropout_loss(p, batch, state, key):
        keep = jax.random.bernoulli(key, 0.5, batch[0].shape)
        loss = model.loss(p, (batch[0] * keep * 2.0, batch[1]))
        return loss, (state, {})

    res = decjax.simulate(
        dropout_loss,
        params,
        decjax.dpsgd(0.1, decjax.ring(N)),
        data,
        steps=20,
        batch_size=8,
        key=jax.random.key(1),
        progress=False,
        model_state={},
        privacy=privacy.Clip(1.0, noise_multiplier=0.5),
    )
    assert np.all(np.isfinite(res.metrics["train_loss"]))
    plain = _sim(
        model,
        params,
        data,
        ds,
        steps=20,
        batch_size=8,
        privacy=privacy.Clip(1.0, noise_multiplier=0.5),
    )
    assert not np.allclose(res.metrics["train_loss"], plain.metrics["train_loss"])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: privacy.Clip(0.0), "clip_norm must be > 0"),
        (lambda: privacy.Clip(-1.0), "clip_norm must be > 0"),
        (lambda: privacy.Clip(1.0, noise_multiplier=-1.0), "noise_multiplier must be >= 0"),
        (lambda: privacy.Clip(1.0, delta=1.0), r"delta must be in \(0.0, 1.0\)"),
        (lambda: privacy.Clip(1.0, accountant="moments"), "accountant"),
        (lambda: privacy.Clip(float("inf"), noise_multiplier=1.0), "infinite"),
        (lambda: privacy.Clip(1.0, epsilon_budget=0.0), "epsilon_budget must be > 0"),
    ],
)
def test_bad_clip_arguments_get_one_line(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_runs_dp_sgd_cannot_account_are_refused_before_compiling(task):
    ds, model, params, data = task
    clip = privacy.Clip(1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="spent by the first step"):
        _sim(
            model,
            params,
            data,
            ds,
            batch_size=8,
            privacy=privacy.Clip(1.0, noise_multiplier=0.3, epsilon_budget=0.5),
        )
    with pytest.raises(ValueError, match="without noise"):
        _sim(model, params, data, ds, batch_size=8, privacy=privacy.Clip(1.0, epsilon_budget=0.5))
    with pytest.raises(ValueError, match="smallest shard"):
        _sim(model, params, data, ds, batch_size=10_000, privacy=clip)
    epochs = decjax.data.distribute(ds, N, key=0, sampling="epochs")
    with pytest.raises(ValueError, match="Poisson sampling"):
        _sim(model, params, epochs, ds, batch_size=8, privacy=clip)
    with pytest.raises(TypeError, match="privacy must be a decjax"):
        _sim(model, params, data, ds, batch_size=8, privacy=1.0)
    state = {"mean": jnp.zeros((N, 3))}
    with pytest.raises(ValueError, match="BatchNorm"):
        decjax.simulate(
            lambda p, b, s, k: (model.loss(p, b), (s, {})),
            params,
            decjax.dpsgd(0.1, decjax.ring(N)),
            data,
            steps=2,
            batch_size=8,
            key=jax.random.key(0),
            progress=False,
            model_state=state,
            privacy=clip,
        )
    with pytest.raises(ValueError, match="make_run: Clip"):
        decjax.make_run(
            model.loss,
            decjax.dpsgd(0.1, decjax.ring(N)),
            steps=2,
            batch_size=8,
            privacy=privacy.Clip(1.0, noise_multiplier=1.0, epsilon_budget=1.0),
        )
