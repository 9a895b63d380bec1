"""zeta^2 as a metric and a knob: the quadratics' closed form against autodiff, the generator's
target, a shard loop, and the neighbourhood heterogeneity of Le Bars et al."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax import learn


@pytest.mark.parametrize("target", [0.0, 0.1, 10.0, 1e4])
def test_the_generator_hits_its_zeta2_and_the_closed_form_is_autodiffs(target):
    q = decjax.problems.quadratics(32, 10, key=jax.random.key(3), zeta2=target)
    assert float(q.zeta2) == pytest.approx(target, rel=1e-5, abs=1e-9)
    measured = decjax.data.heterogeneity(q.loss, q.optimum, q.data)
    np.testing.assert_allclose(float(measured), float(q.zeta2), rtol=1e-5, atol=1e-9)
    # away from the optimum the mean gradient is not zero: the metric centres it
    x = q.optimum + 1.0
    grads = np.asarray(q.a)[:, None] * (np.asarray(x) - np.asarray(q.b))
    want = np.mean(np.sum((grads - grads.mean(0)) ** 2, axis=1))
    np.testing.assert_allclose(float(decjax.data.heterogeneity(q.loss, x, q.data)), want, rtol=1e-5)


def test_the_optimum_does_not_move_with_zeta2():
    low = decjax.problems.quadratics(16, 4, key=jax.random.key(0), zeta2=0.1)
    high = decjax.problems.quadratics(16, 4, key=jax.random.key(0), zeta2=100.0)
    np.testing.assert_allclose(low.optimum, high.optimum, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(low.a, high.a)
    with pytest.raises(ValueError, match="zeta2 must be >= 0"):
        decjax.problems.quadratics(4, 2, key=0, zeta2=-1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        decjax.problems.quadratics(1, 2, key=0, zeta2=1.0)


def _logistic_gradient(params, x, y):
    """Softmax regression's mean cross-entropy gradient in closed form (numpy, float64):
    ``X^T (P - Y) / m`` and ``mean(P - Y)``, flattened in the params' leaf order."""
    ((w, b),) = params
    logits = x @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return np.concatenate([(x.T @ p / len(y)).ravel(), p.mean(axis=0)])


@pytest.fixture(scope="module")
def skewed_digits():
    """The digits over 8 workers (Dirichlet 0.1), logistic regression and its initial model."""
    ds = decjax.data.load_digits()
    model = decjax.problems.logistic_regression(64, 10)
    params = model.init(jax.random.key(0))
    return ds, model, params, decjax.data.distribute(ds, 8, "dirichlet", alpha=0.1, key=0)


def test_on_shards_it_is_a_loop_over_each_workers_whole_shard_and_grows_with_skew(skewed_digits):
    ds, model, params, skewed = skewed_digits
    got = float(decjax.data.heterogeneity(model.loss, params, skewed))
    x, y = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train)
    grads = np.stack(
        [
            _logistic_gradient(params, x[idx[:count]], y[idx[:count]])
            for idx, count in zip(
                np.asarray(skewed.indices), np.asarray(skewed.counts), strict=True
            )
        ]
    )
    want = np.mean(np.sum((grads - grads.mean(0)) ** 2, axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    iid = decjax.data.distribute(ds, 8, "iid", key=0)
    assert float(decjax.data.heterogeneity(model.loss, params, iid)) < got / 10


def test_neighbourhood_heterogeneity_is_zero_on_the_complete_graph_and_the_spread_alone():
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.full(10, 0.1), size=16)
    alone = np.mean(np.sum((pi - pi.mean(0)) ** 2, axis=1))
    assert learn.neighbourhood_heterogeneity(np.eye(16), pi) == pytest.approx(alone)
    assert learn.neighbourhood_heterogeneity(decjax.complete(16), pi) == pytest.approx(0, abs=1e-12)
    ring, exponential = decjax.ring(16), decjax.exponential(16)
    assert (
        0
        < learn.neighbourhood_heterogeneity(exponential, pi)
        < learn.neighbourhood_heterogeneity(ring, pi)
        < alone
    )
    objective = learn.heterogeneity_objective(pi, regularization=0.0)
    assert float(objective(jnp.asarray(ring.numpy_matrices()[0], jnp.float32))) == pytest.approx(
        learn.neighbourhood_heterogeneity(ring, pi), rel=1e-5
    )
    with pytest.raises(ValueError, match="proportions has 4 rows"):
        learn.neighbourhood_heterogeneity(ring, pi[:4])


def test_a_fixed_sample_of_each_shard_estimates_it_and_all_of_it_is_exact(skewed_digits):
    _, model, params, data = skewed_digits
    whole = float(decjax.data.heterogeneity(model.loss, params, data))
    larger = int(np.max(data.counts))
    assert float(decjax.data.heterogeneity(model.loss, params, data, sample=larger)) == (
        pytest.approx(whole, rel=1e-5)
    )
    estimate = float(decjax.data.heterogeneity(model.loss, params, data, sample=64))
    assert estimate == pytest.approx(whole, rel=0.5)
    same = float(decjax.data.heterogeneity(model.loss, params, data, sample=64))
    assert same == estimate  # a fixed sample
