"""DeTAG: reductions to gradient tracking, phases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import quadratic_grads, scan_run

import decjax

N, D = 8, 4


def test_detag_with_one_round_and_no_acceleration_is_gradient_tracking_with_a_stale_gradient(quad):
    """R = 1, eta_g = 0: X+ = W (X - a Y); Y+ = W Y + G_k - G_{k-1}, Y_0 = 0, G_{-1} = 0."""
    topo = decjax.exponential(N)
    w = jnp.asarray(topo.numpy_matrices()[0], jnp.float32)
    x_ref, y, g_prev = quad.init_params(), jnp.zeros((N, D)), jnp.zeros((N, D))
    for _ in range(30):
        g = quadratic_grads(quad, x_ref)
        x_ref = w @ (x_ref - 0.1 * y)
        y = w @ y + g - g_prev
        g_prev = g
    x, _ = scan_run(decjax.detag(0.1, topo, phase_length=1, gossip_momentum=0.0), quad, 30)
    np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-6)


def test_detag_holds_params_fixed_within_a_phase_and_tracks_phase_means(quad):
    tx = decjax.detag(0.1, decjax.ring(N), phase_length=3, gossip_momentum=0.1)
    x, state = quad.init_params() + 1.0, tx.init(quad.init_params())
    update = jax.jit(tx.update)
    phase_grads = []
    for t in range(9):
        g = quadratic_grads(quad, x) + jax.random.normal(jax.random.key(t), x.shape)
        phase_grads.append(g)
        u, state = update(g, state, x)
        if t % 3 != 2:
            np.testing.assert_array_equal(u, 0.0)
        else:
            mean_g = jnp.mean(jnp.stack(phase_grads[-3:]), axis=0).mean(0)
            np.testing.assert_allclose(state.tracker_mix.mean(0), mean_g, atol=1e-5)
        x = optax.apply_updates(x, u)
