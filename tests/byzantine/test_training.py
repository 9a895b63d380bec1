"""Robust gossip inside training: every rule runs through simulate, and without Byzantine
workers every rule learns what plain gossip learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from decjax import byzantine as byz

N = 8
RULES = {
    "clipping": byz.Clipping(),
    "median": byz.Median(),
    "trimmed mean": byz.TrimmedMean(1),
    "geometric median": byz.GeometricMedian(),
    "krum": byz.Krum(1),
    "ios": byz.IOS(1),
    "cs+": byz.CSPlus(1),
}


def _digits():
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, N, "iid", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    return ds, data, model, decjax.replicate(model.init(jax.random.key(0)), N)


def _sweep(robust, seeds, steps=150):
    ds, data, model, params = _digits()
    return decjax.sweep(
        model.loss,
        params,
        lambda: decjax.dpsgd(0.2, decjax.exponential(N), robust=robust),
        data,
        {"seed": list(seeds)},
        steps=steps,
        batch_size=16,
        eval_every=steps,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
    )


def _train(robust, data=None, *, steps=20, momentum=0.0):
    """D-PSGD with ``robust`` on the exponential graph, digits (or ``data``)."""
    _, digits, model, params = _digits()
    return decjax.simulate(
        model.loss,
        params,
        decjax.dpsgd(0.2, decjax.exponential(N), momentum=momentum, robust=robust),
        digits if data is None else data,
        steps=steps,
        batch_size=16,
        eval_every=steps // 2,
        key=jax.random.key(1),
        progress=False,
    )


def test_a_byzantine_run_trains_through_simulate_and_its_honest_models_stay_close():
    bad = byz.Byzantine((3,), byz.SignFlip())
    res = _train(byz.Robust(byz.Clipping(), bad), steps=60)
    assert np.all(np.isfinite(res.metrics["train_loss"]))
    assert float(byz.honest_consensus_distance(res.params, bad)) < float(
        decjax.consensus_distance(res.params)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RULES))
def test_without_byzantine_workers_every_rule_learns_what_gossip_learns(name):
    seeds = range(5)
    gossip = _sweep(None, seeds).final("test_accuracy")
    robust = _sweep(byz.Robust(RULES[name]), seeds).final("test_accuracy")
    spread = max(3 * np.std(gossip, ddof=1), 0.01)
    assert abs(np.mean(robust) - np.mean(gossip)) < spread, (name, gossip, robust)


def test_simulate_records_only_the_honest_workers():
    """With Byzantine workers every record of simulate is over the honest ones: the averaged
    model is theirs, the consensus distance too, and the worst honest worker is reported."""
    bad = byz.Byzantine((2, 5), byz.SignFlip())
    ds, data, model, params = _digits()
    run = decjax.simulate(
        model.loss,
        params,
        decjax.chain(
            optax.clip_by_global_norm(5.0),
            decjax.dpsgd(0.2, decjax.exponential(N), robust=byz.Robust(byz.Median(), bad)),
        ),
        data,
        steps=40,
        batch_size=16,
        eval_every=20,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        eval_workers=True,
        progress=False,
    )
    honest = np.array([i for i in range(N) if i not in bad.workers])
    params = run.params
    # the honest quantities by hand, in float64 over the honest rows only
    rows = [np.asarray(x, np.float64)[honest] for x in jax.tree.leaves(params)]
    distance = sum(np.sum((r - r.mean(axis=0)) ** 2) for r in rows) / honest.size
    np.testing.assert_allclose(run.final("consensus_distance"), distance, rtol=1e-5)
    np.testing.assert_allclose(
        float(byz.honest_consensus_distance(params, bad)), distance, rtol=1e-5
    )
    mean = jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x, np.float64)[honest].mean(axis=0), jnp.float32), params
    )
    expected = model.eval_fn(mean, (ds.x_test, ds.y_test))
    np.testing.assert_allclose(run.final("test_accuracy"), float(expected["accuracy"]), rtol=1e-6)
    honest_mean = jax.tree.leaves(byz.honest_mean(params, bad))
    for a, b in zip(honest_mean, jax.tree.leaves(mean), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    each = [
        float(
            model.eval_fn(jax.tree.map(lambda x, i=i: x[i], params), (ds.x_test, ds.y_test))[
                "accuracy"
            ]
        )
        for i in honest
    ]
    np.testing.assert_allclose(run.final("worker_test_accuracy"), np.mean(each), rtol=1e-5)
    np.testing.assert_allclose(run.final("worker_test_accuracy_min"), min(each), rtol=1e-6)
    np.testing.assert_allclose(run.final("worker_test_accuracy_max"), max(each), rtol=1e-6)


def test_label_flip_trains_the_byzantine_workers_on_flipped_labels_and_nothing_else():
    """A label-flip run equals, bit for bit, a run whose Byzantine workers send their own
    model honestly but train on data flipped beforehand: simulate flips them itself."""
    _, data, _, _ = _digits()
    workers = (1, 6)

    def run(attack, data):
        return _train(byz.Robust(byz.Median(), byz.Byzantine(workers, attack)), data)

    flipped = run(byz.LabelFlip(10), data)
    by_hand = run(byz.NoAttack(), decjax.data.flip_labels(data, workers, 10))
    untouched = run(byz.NoAttack(), data)
    for a, b in zip(jax.tree.leaves(flipped.params), jax.tree.leaves(by_hand.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(flipped.metrics["train_loss"], untouched.metrics["train_loss"])


class _DissensusNeedingItsModel(byz.Dissensus):
    """Dissensus that claims to read its sender's model: every worker's gradient runs."""

    def uses_own_model(self):
        return True


def test_byzantine_workers_whose_messages_ignore_their_model_skip_their_gradients():
    """Skipping the gradients of Byzantine workers whose attack ignores their model leaves
    the honest workers' training unchanged; those workers keep their initial model."""
    _, _, _, params = _digits()
    workers = (0, 3, 5)

    def run(attack):
        return _train(byz.Robust(byz.Clipping(), byz.Byzantine(workers, attack)), momentum=0.9)

    skipped, computed = run(byz.Dissensus(1.5)), run(_DissensusNeedingItsModel(1.5))
    honest = np.array([i for i in range(N) if i not in workers])
    for a, b, p in zip(
        *(jax.tree.leaves(r) for r in (skipped.params, computed.params, params)), strict=True
    ):
        np.testing.assert_allclose(a[honest], b[honest], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(a[np.array(workers)], p[np.array(workers)])
        assert not np.array_equal(b[np.array(workers)], p[np.array(workers)])
    np.testing.assert_allclose(
        skipped.metrics["train_loss"], computed.metrics["train_loss"], rtol=1e-6
    )
