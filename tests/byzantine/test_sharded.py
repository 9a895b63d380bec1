"""Robust gossip sharded over 8 devices agrees with one device, for every rule and attack."""

import jax
import numpy as np
import pytest

import decjax
from decjax import byzantine as byz
from decjax.distributed import worker_mesh

RULES = [
    byz.Gossip(),
    byz.Clipping(),
    byz.Median(),
    byz.TrimmedMean(1),
    byz.GeometricMedian(),
    byz.Krum(1),
    byz.IOS(1),
    byz.CSPlus(1),
    byz.PaperClipping(1),
]
ATTACKS = [
    byz.Dissensus(),
    byz.ALIE(1.0),
    byz.IPM(),
    byz.SignFlip(),
    byz.Gaussian(0.5),
    byz.Dissensus(0.5),
    byz.ALIE(2.0),
    byz.SignFlip(),
    byz.Spectral(0.5),
]


@pytest.mark.parametrize("n", [8, pytest.param(16, marks=pytest.mark.slow)], ids=lambda n: f"n={n}")
@pytest.mark.parametrize("rule, attack", list(zip(RULES, ATTACKS, strict=True)), ids=str)
def test_robust_gossip_sharded_agrees_with_one_device(rule, attack, n):
    assert jax.device_count() == 8
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(n))
    robust = byz.Robust(rule, byz.Byzantine(byz.place(n, 2, seed=n), attack))
    kwargs = {
        "steps": 20,
        "eval_every": 10,
        "key": jax.random.key(1),
        "progress": False,
        "eval_fn": q.eval_fn,
        "eval_workers": True,  # honest-only records: masked sums and extremes across devices
    }

    def run(**extra):
        tx = decjax.dpsgd(0.05, decjax.exponential(n), robust=robust)
        return decjax.simulate(q.loss, q.init_params(), tx, q.data, **kwargs, **extra)

    single, multi = run(), run(mesh=worker_mesh())
    np.testing.assert_allclose(multi.params, single.params, rtol=1e-5, atol=1e-6)
    assert "worker_test_suboptimality_min" in single.metrics
    for metric, values in single.metrics.items():
        np.testing.assert_allclose(
            multi.metrics[metric], values, rtol=1e-4, atol=1e-6, err_msg=metric
        )
