"""Quadratic problems: the optimum is the stationary point."""

import jax
import numpy as np
import pytest

import decjax


def test_quadratic_optimum_is_the_stationary_point():
    q = decjax.problems.quadratics(6, 4, key=jax.random.key(0))
    np.testing.assert_allclose(jax.grad(q.objective)(q.optimum), 0.0, atol=1e-6)
    expected = (np.asarray(q.a)[:, None] * np.asarray(q.b)).sum(0) / np.asarray(q.a).sum()
    np.testing.assert_allclose(q.optimum, expected, rtol=1e-6)
    assert float(q.eval_fn(q.optimum)["suboptimality"]) == pytest.approx(0.0, abs=1e-6)
    assert float(q.eval_fn(q.optimum + 1.0)["distance_to_optimum"]) == pytest.approx(4.0)
