"""Flax NNX models train under decjax (optional extra ``decjax[flax]``, installed in CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax

nnx = pytest.importorskip("flax.nnx")


class TwoLayer(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


@pytest.mark.slow
def test_nnx_params_are_a_plain_stackable_pytree_and_apply_matches_the_module():
    model = decjax.problems.from_nnx(TwoLayer)
    params = model.init(jax.random.key(3))
    module = TwoLayer(nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(0), (5, 64))
    np.testing.assert_allclose(model.apply(params, x), module(x), rtol=1e-6, atol=1e-6)
    stacked = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 4))
    assert stacked["hidden"]["kernel"].shape == (4, 64, 32)


@pytest.mark.slow  # the one-step hand-written reference stays in the inner loop
def test_nnx_model_trains_with_decentralized_sgd_on_digits():
    ds = decjax.data.load_digits()
    n = 8
    data = decjax.data.distribute(ds, n, "iid", key=0)
    model = decjax.problems.from_nnx(TwoLayer)
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    res = decjax.simulate(
        model.loss,
        params,
        decjax.dpsgd(0.2, decjax.exponential(n)),
        data,
        steps=200,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
    )
    assert res.final("test_accuracy") > 0.85
    assert res.metrics["train_loss"][-1] < 0.5 * res.metrics["train_loss"][0]


class BatchNormNet(nnx.Module):
    def __init__(self, rngs, dropout: float = 0.0):
        self.hidden = nnx.Linear(6, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


def _batches(n, b=5, key=0):
    kx, ky = jax.random.split(jax.random.key(key))
    return jax.random.normal(kx, (n, b, 6)), jax.random.randint(ky, (n, b), 0, 3)


def test_a_batchnorm_model_is_stateful_and_its_state_stacks():
    model = decjax.problems.from_nnx(BatchNormNet)
    assert isinstance(model, decjax.problems.StatefulClassifier)
    params, state = model.init(jax.random.key(0))
    assert set(state["norm"]) == {"mean", "var"} and "kernel" in params["hidden"]
    x, _ = _batches(1)
    logits, new = model.apply(params, state, jax.random.key(1), x[0], True)
    assert logits.shape == (5, 3) and not np.allclose(new["norm"]["mean"], 0.0)
    _, same = model.apply(params, state, jax.random.key(1), x[0], False)  # eval: no update
    np.testing.assert_array_equal(same["norm"]["mean"], state["norm"]["mean"])


def test_one_step_on_the_complete_graph_with_mixed_state_matches_a_hand_written_step():
    """D-PSGD on the complete graph: the new params are x - lr * mean_i g_i, where g_i is
    worker i's gradient through BatchNorm in train mode on its own batch, and the mixed
    state is the mean of the workers' updated statistics (module calls, no decjax)."""
    n, lr = 4, 0.3
    model = decjax.problems.from_nnx(BatchNormNet)
    params, state = model.init(jax.random.key(0))
    x, y = _batches(n)
    res = decjax.simulate(
        model.loss,
        decjax.replicate(params, n),
        decjax.dpsgd(lr, decjax.complete(n)),
        (x, y),
        steps=1,
        eval_every=1,
        key=jax.random.key(1),
        model_state=decjax.replicate(state, n),
        mix_model_state=decjax.complete(n),
        progress=False,
    )
    grads, stats = [], []
    for i in range(n):
        module = BatchNormNet(nnx.Rngs(0))
        module.train()

        def loss(m, i=i):
            logits = m(x[i])
            return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(5), y[i]])

        grads.append(nnx.to_pure_dict(nnx.grad(loss)(module)))
        stats.append(np.asarray(module.norm.mean[...]))
    expected = jax.tree.map(lambda p, *g: p - lr * np.mean(g, axis=0), params, *grads)
    for got, want in zip(jax.tree.leaves(res.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=2e-6)
    np.testing.assert_allclose(
        res.model_state["norm"]["mean"], np.broadcast_to(np.mean(stats, 0), (n, 8)), atol=1e-6
    )
    assert 0.0 <= res.final("train_accuracy") <= 1.0


def test_local_statistics_differ_across_workers_with_label_sorted_data():
    n = 4
    model = decjax.problems.from_nnx(BatchNormNet)
    params, state = model.init(jax.random.key(0))
    x, y = _batches(n)
    x = x + jnp.arange(n)[:, None, None] * 3.0  # each worker sees a shifted input distribution
    common = {"steps": 4, "eval_every": 4, "key": jax.random.key(1), "progress": False}
    args = (model.loss, decjax.replicate(params, n), decjax.dpsgd(0.1, decjax.ring(n)), (x, y))
    local = decjax.simulate(*args, model_state=decjax.replicate(state, n), **common)
    mixed = decjax.simulate(
        *args,
        model_state=decjax.replicate(state, n),
        mix_model_state=decjax.complete(n),
        **common,
    )
    means = np.asarray(local.model_state["norm"]["mean"])
    assert np.ptp(means, axis=0).max() > 1.0  # the workers' running means differ
    np.testing.assert_allclose(
        np.ptp(np.asarray(mixed.model_state["norm"]["mean"]), 0), 0, atol=1e-6
    )


class InputNorm(nnx.Module):
    """BatchNorm on the input: each worker's batch mean does not depend on the params."""

    def __init__(self, rngs):
        self.norm = nnx.BatchNorm(6, momentum=0.5, rngs=rngs)
        self.out = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(x))


@pytest.mark.slow
@pytest.mark.parametrize("mixed", [False, True], ids=["local-state", "mixed-state"])
def test_batchnorm_statistics_under_faults_and_stragglers_follow_the_closed_form(mixed):
    """Full batches, so worker i's input mean mu_i is fixed and its running mean after T
    steps is (1 - m^T) mu_i. Mixed with a faulty ring (Metropolis on the surviving
    links: symmetric, doubly stochastic at every step), the workers' average stays on
    (1 - m^T) mean_i mu_i whatever fails, while the spread differs from the clean ring."""
    n, steps, m = 8, 12, 0.5
    model = decjax.problems.from_nnx(InputNorm)
    params, state = model.init(jax.random.key(0))
    x, y = _batches(n, b=7)
    x = x + jnp.arange(n)[:, None, None]  # a different input mean per worker
    faulty = decjax.topology.with_faults(
        decjax.ring(n), key=jax.random.key(2), link_failure=0.4, node_failure=0.2
    )
    speeds = [1.0, 0.3] * (n // 2)

    def run(topology):
        tx = decjax.algorithms.stragglers(
            decjax.dpsgd(0.1, topology, momentum=0.9), speeds, key=jax.random.key(3)
        )
        return decjax.simulate(
            model.loss,
            decjax.replicate(params, n),
            tx,
            (x, y),
            steps=steps,
            eval_every=steps,
            key=jax.random.key(1),
            model_state=decjax.replicate(state, n),
            mix_model_state=topology if mixed else None,
            progress=False,
        )

    res, clean = run(faulty), run(decjax.ring(n))
    assert np.all(np.isfinite(res.metrics["train_loss"]))
    means = np.asarray(res.model_state["norm"]["mean"])
    mu = np.asarray(x.mean(axis=1))
    if not mixed:
        np.testing.assert_allclose(means, (1 - m**steps) * mu, atol=1e-5)
        return
    np.testing.assert_allclose(means.mean(0), (1 - m**steps) * mu.mean(0), atol=1e-5)
    assert np.abs(means - np.asarray(clean.model_state["norm"]["mean"])).max() > 1e-2


def test_dropout_keys_differ_across_workers_and_steps_and_repeat_under_a_seed():
    """A plain-JAX stateful loss that stores a draw from its key as its state."""

    def loss(params, batch, state, key):
        del state
        draw = jax.random.uniform(key)
        return jnp.sum(params**2) * 0.0 + draw * 0.0, ({"draw": draw}, {})

    n = 4
    params = jnp.zeros((n, 2))
    state = {"draw": jnp.zeros((n,))}
    tx = decjax.dpsgd(0.1, decjax.ring(n))

    def draws(steps, seed):
        res = decjax.simulate(
            loss,
            params,
            tx,
            jnp.zeros((n, 1)),
            steps=steps,
            eval_every=1,
            key=jax.random.key(seed),
            model_state=state,
            progress=False,
        )
        return np.asarray(res.model_state["draw"])

    first, second = draws(1, 0), draws(2, 0)
    assert len(set(first.tolist())) == n  # a key per worker
    assert not np.any(first == second)  # and per step
    np.testing.assert_array_equal(first, draws(1, 0))  # same seed, same keys
    assert not np.any(first == draws(1, 1))


@pytest.mark.slow
def test_stateful_training_on_digits_sweeps_and_evaluates_with_the_averaged_state():
    ds = decjax.data.load_digits()
    n = 4
    data = decjax.data.distribute(ds, n, "iid", key=0)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, 32, rngs=rngs)
            self.norm = nnx.BatchNorm(32, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.out = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))

    model = decjax.problems.from_nnx(Net)
    params, state = model.init(jax.random.key(0))
    res = decjax.sweep(
        model.loss,
        decjax.replicate(params, n),
        lambda lr: decjax.dpsgd(lr, decjax.ring(n), momentum=0.9),
        data,
        {"lr": [0.02, 0.05]},
        steps=200,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        model_state=decjax.replicate(state, n),
        progress=False,
    )
    assert res.metrics["test_accuracy"].shape == (2, 25)
    assert np.all(res.final("test_accuracy") > 0.85)
    assert np.all(res.final("train_accuracy") > 0.8)
    assert res.model_state["norm"]["mean"].shape == (2, n, 32)


def test_stateful_loss_with_a_wrong_output_is_refused_in_one_line():
    n = 2
    params = jnp.zeros((n, 2))
    with pytest.raises(ValueError, match=r"must return \(loss, \(new_model_state, aux_dict\)\)"):
        decjax.simulate(
            lambda p, b, s, k: jnp.sum(p),
            params,
            decjax.dpsgd(0.1, decjax.ring(n)),
            jnp.zeros((n, 1)),
            steps=1,
            key=jax.random.key(0),
            model_state={},
            progress=False,
        )
    with pytest.raises(ValueError, match=r"model_state.* must be stacked over the n=2 workers"):
        decjax.simulate(
            lambda p, b, s, k: (jnp.sum(p), (s, {})),
            params,
            decjax.dpsgd(0.1, decjax.ring(n)),
            jnp.zeros((n, 1)),
            steps=1,
            key=jax.random.key(0),
            model_state={"m": jnp.zeros(3)},
            progress=False,
        )


def test_make_model_must_be_callable():
    with pytest.raises(TypeError, match="make_model must be callable"):
        decjax.problems.from_nnx(jnp.ones(3))


def test_a_custom_loss_replaces_cross_entropy_and_drops_accuracy():
    """Least squares with a linear module: the loss is the mean squared error, by hand."""

    def mse(outputs, targets):
        return jnp.mean((outputs[:, 0] - targets) ** 2)

    model = decjax.problems.from_nnx(lambda rngs: nnx.Linear(3, 1, rngs=rngs), loss=mse, l2=0.1)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (7, 3))
    y = jnp.arange(7.0)
    outputs = np.asarray(x) @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    by_hand = np.mean((outputs[:, 0] - np.asarray(y)) ** 2)
    norm = sum(np.sum(np.square(v)) for v in jax.tree.leaves(params))
    assert model.loss(params, (x, y)) == pytest.approx(by_hand + 0.05 * norm, rel=1e-5)
    assert model.eval_fn(params, (x, y)) == {"loss": pytest.approx(by_hand, rel=1e-5)}
    stateful = decjax.problems.from_nnx(BatchNormNet, loss=lambda o, t: jnp.mean(o**2))
    p, s = stateful.init(jax.random.key(0))
    value, (_, extra) = stateful.loss(p, (x[:, :1].repeat(6, 1), y), s, jax.random.key(2))
    assert extra == {} and np.isfinite(value)
    with pytest.raises(TypeError, match="loss"):
        decjax.problems.from_nnx(BatchNormNet, loss="mse")


def test_to_nnx_puts_the_averaged_or_one_workers_model_back_into_a_module():
    model = decjax.problems.from_nnx(BatchNormNet)
    n = 3
    keys = jax.random.split(jax.random.key(0), n)
    params, state = jax.vmap(model.init)(keys)  # three different workers
    x, _ = _batches(1)
    mean = jax.tree.map(lambda v: v.mean(0), (params, state))
    module = decjax.problems.to_nnx(BatchNormNet, params, state, worker="mean")
    module.eval()
    want, _ = model.apply(*mean, jax.random.key(0), x[0], False)
    np.testing.assert_allclose(module(x[0]), want, rtol=1e-6, atol=1e-6)
    second = decjax.problems.to_nnx(BatchNormNet, params, state, worker=1)
    second.eval()
    one = jax.tree.map(lambda v: v[1], (params, state))
    want, _ = model.apply(*one, jax.random.key(0), x[0], False)
    np.testing.assert_allclose(second(x[0]), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"stacked over workers\? pass worker=i"):
        decjax.problems.to_nnx(BatchNormNet, params)
    with pytest.raises(ValueError, match=r"worker must be in \[0, 3\)"):
        decjax.problems.to_nnx(BatchNormNet, params, worker=3)
    with pytest.raises(ValueError, match="structure"):
        decjax.problems.to_nnx(BatchNormNet, {"hidden": params["hidden"]}, worker=0)


def test_a_batchnorm_regression_trains_under_simulate_with_a_custom_loss():
    """Real-valued targets: no label-range check, the loss falls, eval reports the loss."""
    n = 4
    x = jax.random.normal(jax.random.key(0), (n, 32, 6))
    y = jnp.sum(x, -1)  # not class labels
    model = decjax.problems.from_nnx(BatchNormNet, loss=lambda o, t: jnp.mean((o[:, 0] - t) ** 2))
    params, state = model.init(jax.random.key(0))
    res = decjax.simulate(
        model.loss,
        decjax.replicate(params, n),
        decjax.dpsgd(0.05, decjax.ring(n)),
        (x, y),
        steps=40,
        eval_every=20,
        key=jax.random.key(1),
        model_state=decjax.replicate(state, n),
        eval_fn=model.eval_fn,
        eval_data=(x[0], y[0]),
        progress=False,
    )
    assert "test_accuracy" not in res.metrics and "test_loss" in res.metrics
    assert res.metrics["train_loss"][-1] < 0.2 * res.metrics["train_loss"][0]
