"""Problems have the optimum they claim; metrics match their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.metrics import consensus_distance, evaluate, worker_mean


def test_quadratic_optimum_is_the_stationary_point():
    q = decjax.problems.quadratics(6, 4, key=jax.random.key(0))
    np.testing.assert_allclose(jax.grad(q.objective)(q.optimum), 0.0, atol=1e-6)
    expected = (np.asarray(q.a)[:, None] * np.asarray(q.b)).sum(0) / np.asarray(q.a).sum()
    np.testing.assert_allclose(q.optimum, expected, rtol=1e-6)
    assert float(q.eval_fn(q.optimum)["suboptimality"]) == pytest.approx(0.0, abs=1e-6)
    assert float(q.eval_fn(q.optimum + 1.0)["distance_to_optimum"]) == pytest.approx(4.0)


def test_logistic_regression_at_zero_has_log_classes_loss():
    model = decjax.problems.logistic_regression(5, 4)
    params = model.init(jax.random.key(0))
    x, y = jnp.ones((3, 5)), jnp.array([0, 1, 3])
    assert float(model.loss(params, (x, y))) == pytest.approx(np.log(4), rel=1e-6)


@pytest.mark.slow
def test_mlp_shapes_gradients_and_l2():
    model = decjax.problems.mlp([8, 16, 3], l2=0.1)
    params = model.init(jax.random.key(0))
    x, y = jax.random.normal(jax.random.key(1), (5, 2, 4)), jnp.array([0, 1, 2, 0, 1])
    assert model.apply(params, x).shape == (5, 3)
    grads = jax.grad(model.loss)(params, (x, y))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    plain = decjax.problems.mlp([8, 16, 3])
    gap = model.loss(params, (x, y)) - plain.loss(params, (x, y))
    sq = sum(float(jnp.sum(p**2)) for p in jax.tree.leaves(params))
    assert float(gap) == pytest.approx(0.05 * sq, rel=1e-5)
    metrics = model.eval_fn(params, (x, y))
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0


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
