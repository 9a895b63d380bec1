"""Robust gossip inside training: every rule runs through simulate, and without Byzantine
workers every rule learns what plain gossip learns."""

import jax
import numpy as np
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


def test_a_byzantine_run_trains_through_simulate_and_its_honest_models_stay_close():
    bad = byz.Byzantine((3,), byz.SignFlip())
    robust = byz.Robust(byz.Clipping(), bad)
    _, data, model, params = _digits()
    res = decjax.simulate(
        model.loss,
        params,
        decjax.dpsgd(0.2, decjax.exponential(N), robust=robust),
        data,
        steps=60,
        batch_size=16,
        eval_every=30,
        key=jax.random.key(1),
        progress=False,
    )
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
