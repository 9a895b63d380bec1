"""Classifiers: losses, shapes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax


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
