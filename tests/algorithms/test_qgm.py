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
