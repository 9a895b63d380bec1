"""Metrics: consensus distance, evaluation, and bad arguments of problems and metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.metrics import consensus_distance, evaluate, worker_mean


def test_consensus_distance_closed_form():
    x = {"a": jnp.array([[1.0, 0.0], [3.0, 0.0]]), "b": jnp.array([0.0, 2.0])}
    # a: deviations +-1 -> (1 + 1)/2 = 1 ; b: deviations +-1 -> (1 + 1)/2 = 1
    assert float(consensus_distance(x)) == pytest.approx(2.0)
    assert float(consensus_distance(jnp.ones((4, 3)))) == 0.0
    np.testing.assert_allclose(worker_mean(x)["a"], [2.0, 0.0])


def test_evaluate_reports_averaged_model_and_worker_mean():
    def fn(p, data):
        return {"err": jnp.abs(p - data)}

    out = evaluate(fn, jnp.array([1.0, 3.0]), 2.0, prefix="test_")
    assert float(out["test_err"]) == 0.0
    assert float(out["worker_test_err"]) == 1.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: decjax.problems.quadratics(0, 2, key=jax.random.key(0)), ValueError, "n must be"),
        (
            lambda: decjax.problems.quadratics(2, 2, key=jax.random.key(0), curvature=(2.0, 1.0)),
            ValueError,
            "high >= low",
        ),
        (
            lambda: decjax.problems.quadratics(2, 2, key=jax.random.key(0), spread=0.0),
            ValueError,
            "spread must be > 0",
        ),
        (lambda: decjax.problems.mlp([8]), ValueError, "at least 2"),
        (lambda: decjax.problems.mlp([8, 0]), ValueError, r"layer_sizes\[1\] must be >= 1"),
        (lambda: decjax.problems.mlp([8, 2], l2=-1.0), ValueError, "l2 must be >= 0"),
        (lambda: decjax.problems.logistic_regression(3, 1), ValueError, "num_classes must be >= 2"),
        (lambda: consensus_distance({}), ValueError, "at least one leaf"),
    ],
)
def test_bad_arguments_are_rejected(call, error, message):
    with pytest.raises(error, match=message):
        call()
