"""Local SGD and Gossip-PGA against centralized SGD and exact averages."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import quadratic_grads, scan_run

import decjax

N, D = 8, 4


def test_local_sgd_every_step_is_centralized_sgd(quad):
    x, _ = scan_run(decjax.local_sgd(0.1, N, every=1, momentum=0.5), quad, 40)
    central = optax.sgd(0.1, momentum=0.5)
    xc, s = jnp.zeros(D), central.init(jnp.zeros(D))
    for _ in range(40):
        u, s = central.update(jax.grad(quad.objective)(xc), s, xc)
        xc = optax.apply_updates(xc, u)
    np.testing.assert_allclose(x, jnp.broadcast_to(xc, x.shape), atol=1e-5)


def test_gossip_pga_and_local_sgd_average_exactly_every_h_steps(quad):
    for tx in [decjax.gossip_pga(0.1, decjax.ring(N), every=4), decjax.local_sgd(0.1, N, every=4)]:
        x, state = quad.init_params(), tx.init(quad.init_params())
        for t in range(12):
            u, state = tx.update(quadratic_grads(quad, x), state, x)
            x = optax.apply_updates(x, u)
            cd = float(decjax.consensus_distance(x))
            assert (cd < 1e-10) == ((t + 1) % 4 == 0), (t, cd)
