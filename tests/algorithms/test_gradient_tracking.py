"""Gradient tracking and the exact methods: convergence to the optimum, the tracking invariant."""

import jax
import numpy as np
import optax
import pytest
from helpers import quadratic_grads, scan_run

import decjax

N, D = 8, 4


EXACT = {
    "gradient_tracking_atc": lambda t: decjax.gradient_tracking(0.1, t),
    "gradient_tracking_parallel": lambda t: decjax.gradient_tracking(0.1, t, order="parallel"),
    "d2": lambda t: decjax.d2(0.1, decjax.topology.lazy(t, 0.5)),
    "exact_diffusion": lambda t: decjax.exact_diffusion(0.1, t),
    "detag": lambda t: decjax.detag(0.1, t, phase_length=2, gossip_momentum=0.2),
}


# D² needs symmetric matrices: the (directed) one-peer exponential graph is not a case for it.
CASES = [
    (name, topo)
    for name in EXACT
    for topo in ["ring", "torus", "one_peer_exponential"]
    if not (name == "d2" and topo == "one_peer_exponential")
]


@pytest.mark.parametrize(("name", "topo"), CASES)
def test_exact_methods_converge_to_the_optimum_at_every_worker(name, topo, quad):
    topology = decjax.topology.by_name(topo, N)
    x, _ = scan_run(EXACT[name](topology), quad, 1500)
    err = np.max(np.abs(np.asarray(x) - np.asarray(quad.optimum)[None]))
    assert err < 1e-5, (name, topo, err)


def test_dpsgd_does_not_reach_the_optimum(quad):
    x, _ = scan_run(decjax.dpsgd(0.1, decjax.ring(N)), quad, 1500)
    assert np.max(np.abs(np.asarray(x) - np.asarray(quad.optimum)[None])) > 1e-2


@pytest.mark.parametrize("form", ["atc", "parallel"])
def test_gradient_tracking_tracks_the_average_gradient(form, quad):
    """mean(Y_t) = mean(G_t) at every step, with noisy (stochastic) gradients."""
    tx = decjax.gradient_tracking(0.05, decjax.random_matching(N, key=0), order=form)
    x, state = quad.init_params(), tx.init(quad.init_params())
    update = jax.jit(tx.update)
    for t in range(20):
        g = quadratic_grads(quad, x) + jax.random.normal(jax.random.key(t), x.shape)
        u, state = update(g, state, x)
        np.testing.assert_allclose(state.tracker.mean(0), g.mean(0), atol=1e-5)
        x = optax.apply_updates(x, u)


def test_gradient_tracking_form_is_a_deprecated_alias_of_order(quad):
    with pytest.warns(DeprecationWarning, match="pass order="):
        old = decjax.gradient_tracking(0.1, decjax.ring(N), form="parallel")
    new = decjax.gradient_tracking(0.1, decjax.ring(N), order="parallel")
    np.testing.assert_array_equal(scan_run(old, quad, 50)[0], scan_run(new, quad, 50)[0])
