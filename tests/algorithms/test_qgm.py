"""Quasi-global momentum against its update rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import quadratic_grads

import decjax

N, D = 8, 4


def test_qg_dsgdm_matches_its_update_rule(quad):
    key = jax.random.key(3)
    topo = decjax.ring(N)
    w = jnp.asarray(topo.numpy_matrices()[0], jnp.float32)
    beta, mu, eta = 0.9, 0.8, 0.05
    for nesterov in (False, True):
        x = jax.random.normal(key, (N, D))
        m_hat = jnp.zeros((N, D))
        tx = decjax.qg_dsgdm(eta, topo, momentum=beta, buffer_decay=mu, nesterov=nesterov)
        xs, state = x, tx.init(x)
        for _ in range(5):
            g = quadratic_grads(quad, x)
            m_tilde = beta * m_hat + g
            direction = g + beta * m_tilde if nesterov else m_tilde
            x_new = w @ (x - eta * direction)
            m_hat = mu * m_hat + (1 - mu) * (x - x_new) / eta
            x = x_new
            u, state = tx.update(quadratic_grads(quad, xs), state, xs)
            xs = optax.apply_updates(xs, u)
        np.testing.assert_allclose(xs, x, atol=1e-5)


def test_a_warm_up_from_zero_leaves_the_buffer_and_stays_finite():
    """At eta = 0 the displacement (X - X+) / eta is undefined: the step gossips and the
    buffer stays (0 at the start), instead of NaN for the rest of the run."""
    schedule = optax.linear_schedule(0.0, 0.1, 5)
    tx = decjax.qg_dsgdm(schedule, decjax.ring(4), momentum=0.9)
    x = jnp.arange(4.0)[:, None]
    state = tx.init(x)
    x1, state, _ = tx.step(jnp.ones_like(x), state, x)
    np.testing.assert_allclose(state.momentum, 0.0)
    np.testing.assert_allclose(x1, decjax.mix(decjax.ring(4), x), rtol=1e-6)
    for _ in range(10):
        x1, state, _ = tx.step(jnp.ones_like(x1), state, x1)
    assert np.all(np.isfinite(x1)) and np.all(np.isfinite(state.momentum))
