"""D-PSGD: the stacked formula, reductions to centralized and independent SGD, the bias."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import quadratic_grads, scan_run

import decjax

N, D = 8, 5


@pytest.fixture
def quad():
    return decjax.problems.quadratics(N, D, key=jax.random.key(0))


@pytest.mark.parametrize("order", ["atc", "parallel"])
def test_dpsgd_update_matches_the_stacked_formula(order, quad, key):
    topo = decjax.ring(N)
    w = topo.numpy_matrices()[0]
    x = np.asarray(jax.random.normal(key, (N, D)), np.float64)
    g = np.asarray(quadratic_grads(quad, jnp.asarray(x, jnp.float32)), np.float64)
    tx = decjax.dpsgd(0.1, topo, order=order)
    u, _ = tx.update(jnp.asarray(g, jnp.float32), tx.init(x), jnp.asarray(x, jnp.float32))
    got = x + np.asarray(u, np.float64)
    expected = w @ (x - 0.1 * g) if order == "atc" else w @ x - 0.1 * g
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_dpsgd_on_complete_graph_equals_centralized_sgd_on_averaged_gradient(momentum, quad):
    """ATC order; the parallel order adds un-averaged gradients after mixing, so it does not."""
    x0 = jnp.zeros((N, D))
    decentral = scan_run(decjax.dpsgd(0.05, decjax.complete(N), momentum=momentum), quad, 30, x0)[0]
    # centralized reference: one model, gradient of f = mean_i f_i
    central_tx = optax.sgd(0.05, momentum=momentum or None)
    x, s = jnp.zeros(D), central_tx.init(jnp.zeros(D))
    for _ in range(30):
        u, s = central_tx.update(jax.grad(quad.objective)(x), s, x)
        x = optax.apply_updates(x, u)
    np.testing.assert_allclose(decentral, jnp.broadcast_to(x, (N, D)), atol=2e-5)


def test_dpsgd_on_solo_equals_independent_runs(quad, key):
    x0 = jax.random.normal(key, (N, D))
    got = scan_run(decjax.dpsgd(0.1, decjax.solo(N), momentum=0.5), quad, 20, x0)[0]
    for i in range(N):
        tx = optax.sgd(0.1, momentum=0.5)
        xi, s = x0[i], tx.init(x0[i])
        for _ in range(20):
            u, s = tx.update(jax.grad(quad.loss)(xi, (quad.a[i], quad.b[i])), s, xi)
            xi = optax.apply_updates(xi, u)
        np.testing.assert_allclose(got[i], xi, atol=1e-6)


def test_dpsgd_on_ring_has_a_bias_of_order_learning_rate(quad):
    """Constant-step D-PSGD on heterogeneous quadratics misses x*; the bias shrinks with lr."""
    biases = []
    for lr in [0.1, 0.05]:
        x = scan_run(decjax.dpsgd(lr, decjax.ring(N)), quad, 2000, jnp.zeros((N, D)))[0]
        assert float(decjax.consensus_distance(x)) > 1e-4
        biases.append(float(jnp.sum((x.mean(axis=0) - quad.optimum) ** 2)))
    assert biases[0] > 1e-5
    assert biases[1] < 0.6 * biases[0]
