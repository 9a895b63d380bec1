"""Exact methods reach x* on heterogeneous quadratics; reductions between algorithms hold."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import step_loop

import decjax
from decjax.gossip import accelerated_mix, optimal_momentum

N, D = 8, 4


@pytest.fixture(scope="module")
def quad():
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0), curvature=(0.5, 2.0))
    assert float(q.a.max() - q.a.min()) > 0.5  # distinct curvatures: local optima differ
    return q


def _grads(quad, x):
    return jax.vmap(jax.grad(quad.loss))(x, quad.data)


def _run(tx, quad, steps, x=None, grads_fn=None):
    grads_fn = grads_fn or (lambda x, t: _grads(quad, x))
    x = quad.init_params() if x is None else x

    def body(carry, t):
        x, state = carry
        u, state = tx.update(grads_fn(x, t), state, x)
        return (optax.apply_updates(x, u), state), None

    (x, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(steps)))((x, tx.init(x)))
    return x, state


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
    x, _ = _run(EXACT[name](topology), quad, 1500)
    err = np.max(np.abs(np.asarray(x) - np.asarray(quad.optimum)[None]))
    assert err < 1e-5, (name, topo, err)


@pytest.mark.parametrize("name", ["d2", "exact_diffusion"])
@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_corrected_diffusion_does_not_drift_in_float32(name, backend, quad):
    """The naive recursion 2X_t - X_{t-1} integrates rounding (measured: 1.4e-3 off after
    6000 steps); the primal-dual form used by decjax stays at float32 precision."""
    if name == "d2":
        tx = decjax.d2(0.1, decjax.topology.lazy(decjax.torus(2, 4), 0.5), backend=backend)
    else:
        tx = decjax.exact_diffusion(0.1, decjax.torus(2, 4), backend=backend)
    x, _ = _run(tx, quad, 6000)
    err = np.max(np.abs(np.asarray(x) - np.asarray(quad.optimum)[None]))
    assert err < 1e-5, err


def test_dpsgd_does_not_reach_the_optimum(quad):
    x, _ = _run(decjax.dpsgd(0.1, decjax.ring(N)), quad, 1500)
    assert np.max(np.abs(np.asarray(x) - np.asarray(quad.optimum)[None])) > 1e-2


def test_d2_on_an_odd_ring_without_laziness(quad):
    """ring(9) has lambda_min = (1 + 2 cos(8 pi / 9)) / 3 > -1/3: D² runs on it directly."""
    q = decjax.problems.quadratics(9, D, key=jax.random.key(1))
    x, _ = _run(decjax.d2(0.05, decjax.ring(9)), q, 3000)
    np.testing.assert_allclose(x, jnp.broadcast_to(q.optimum, x.shape), atol=1e-5)


@pytest.mark.parametrize("form", ["atc", "parallel"])
def test_gradient_tracking_tracks_the_average_gradient(form, quad):
    """mean(Y_t) = mean(G_t) at every step, with noisy (stochastic) gradients."""
    tx = decjax.gradient_tracking(0.05, decjax.random_matching(N, key=0), order=form)
    x, state = quad.init_params(), tx.init(quad.init_params())
    update = jax.jit(tx.update)
    for t in range(20):
        g = _grads(quad, x) + jax.random.normal(jax.random.key(t), x.shape)
        u, state = update(g, state, x)
        np.testing.assert_allclose(state.tracker.mean(0), g.mean(0), atol=1e-5)
        x = optax.apply_updates(x, u)


def test_detag_with_one_round_and_no_acceleration_is_gradient_tracking_with_a_stale_gradient(quad):
    """R = 1, eta_g = 0: X+ = W (X - a Y); Y+ = W Y + G_k - G_{k-1}, Y_0 = 0, G_{-1} = 0."""
    topo = decjax.exponential(N)
    w = jnp.asarray(topo.numpy_matrices()[0], jnp.float32)
    x_ref, y, g_prev = quad.init_params(), jnp.zeros((N, D)), jnp.zeros((N, D))
    for _ in range(30):
        g = _grads(quad, x_ref)
        x_ref = w @ (x_ref - 0.1 * y)
        y = w @ y + g - g_prev
        g_prev = g
    x, _ = _run(decjax.detag(0.1, topo, phase_length=1, gossip_momentum=0.0), quad, 30)
    np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-6)


def test_detag_holds_params_fixed_within_a_phase_and_tracks_phase_means(quad):
    tx = decjax.detag(0.1, decjax.ring(N), phase_length=3, gossip_momentum=0.1)
    x, state = quad.init_params() + 1.0, tx.init(quad.init_params())
    update = jax.jit(tx.update)
    phase_grads = []
    for t in range(9):
        g = _grads(quad, x) + jax.random.normal(jax.random.key(t), x.shape)
        phase_grads.append(g)
        u, state = update(g, state, x)
        if t % 3 != 2:
            np.testing.assert_array_equal(u, 0.0)
        else:
            mean_g = jnp.mean(jnp.stack(phase_grads[-3:]), axis=0).mean(0)
            np.testing.assert_allclose(state.tracker_mix.mean(0), mean_g, atol=1e-5)
        x = optax.apply_updates(x, u)


def test_choco_with_identity_compressor_is_atc_dpsgd(quad):
    topo = decjax.torus(2, 4)
    choco = decjax.choco_sgd(0.1, topo, compressor=decjax.gossip.identity(), consensus_step=1.0)
    x_choco, _ = _run(choco, quad, 50)
    x_dpsgd, _ = _run(decjax.dpsgd(0.1, topo), quad, 50)
    np.testing.assert_allclose(x_choco, x_dpsgd, atol=1e-5)


@pytest.mark.parametrize(
    "compressor",
    [
        decjax.gossip.top_k(1),
        decjax.gossip.sign(),
        decjax.gossip.qsgd(4),
        decjax.gossip.random_k(fraction=0.5),
    ],
    ids=lambda c: c.name,
)
def test_choco_with_compression_reaches_a_neighbourhood_of_the_optimum(compressor, quad):
    tx = decjax.choco_sgd(0.02, decjax.ring(N), compressor=compressor, consensus_step=0.2)
    x, _, recorded = step_loop(tx, quad.init_params(), lambda x, t: _grads(quad, x), 3000)
    dist = float(jnp.sum((x.mean(0) - quad.optimum) ** 2))
    assert dist < 0.05
    full = 3000 * 2 * D * 4  # uncompressed messages to 2 neighbours
    assert float(recorded["bytes_sent"]) < full


def test_local_sgd_every_step_is_centralized_sgd(quad):
    x, _ = _run(decjax.local_sgd(0.1, N, every=1, momentum=0.5), quad, 40)
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
            u, state = tx.update(_grads(quad, x), state, x)
            x = optax.apply_updates(x, u)
            cd = float(decjax.consensus_distance(x))
            assert (cd < 1e-10) == ((t + 1) % 4 == 0), (t, cd)


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
            g = _grads(quad, x)
            m_tilde = beta * m_hat + g
            direction = g + beta * m_tilde if nesterov else m_tilde
            x_new = w @ (x - eta * direction)
            m_hat = mu * m_hat + (1 - mu) * (x - x_new) / eta
            x = x_new
            u, state = tx.update(_grads(quad, xs), state, xs)
            xs = optax.apply_updates(xs, u)
        np.testing.assert_allclose(xs, x, atol=1e-5)


# -- accelerated gossip ----------------------------------------------------------------------


def _polynomial(topology, rounds, momentum):
    """p_R(W) as a matrix: accelerated gossip applied to the identity."""
    return np.asarray(
        accelerated_mix(topology, jnp.eye(topology.n), rounds=rounds, momentum=momentum),
        np.float64,
    )


def test_accelerated_gossip_preserves_the_average_and_beats_plain_gossip_on_a_ring():
    n = 32
    ring = decjax.ring(n)
    lam = (1 + 2 * np.cos(2 * np.pi / n)) / 3
    eta = optimal_momentum(ring)
    assert eta == pytest.approx((1 - np.sqrt(1 - lam**2)) / (1 + np.sqrt(1 - lam**2)), rel=1e-5)
    j = np.full((n, n), 1 / n)
    for rounds in (32, 64):
        p = _polynomial(ring, rounds, eta)
        # columns sum to one (average kept); the momentum recursion amplifies float32
        # rounding by about (1 + eta) per round: 64 rounds x ~2 ulp
        np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=5e-5)
        accelerated = np.linalg.norm(p - j, 2)
        plain = np.linalg.norm(np.linalg.matrix_power(ring.numpy_matrices()[0], rounds) - j, 2)
        rate = (1 - np.sqrt(1 - lam)) ** rounds
        assert accelerated < 0.1 * plain
        assert accelerated < 4 * rate
    np.testing.assert_allclose(
        _polynomial(ring, 5, 0.0),
        np.linalg.matrix_power(ring.numpy_matrices()[0], 5),
        atol=1e-6,
    )


# -- consensus control -----------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["gossip", "exact"])
def test_consensus_control_adapts_rounds_to_reach_the_target(estimator, quad):
    ring = decjax.ring(N)
    loose = decjax.consensus_control(optax.sgd(0.1), ring, target=1e-1, estimator=estimator)
    tight = decjax.consensus_control(
        optax.sgd(0.1), ring, target=1e-6, estimator=estimator, max_rounds=200
    )
    x_loose, s_loose = _run(loose, quad, 50)
    x_tight, s_tight = _run(tight, quad, 50)
    assert int(s_tight[1].gossip_rounds) > 2 * int(s_loose[1].gossip_rounds)
    assert float(decjax.consensus_distance(x_tight)) <= 1e-6
    assert float(decjax.consensus_distance(x_loose)) > 1e-6
    if estimator == "gossip":  # an upper bound on the true distance
        assert float(s_tight[1].estimate) >= float(decjax.consensus_distance(x_tight)) * 0.999


def test_consensus_control_target_schedule_and_max_rounds(quad):
    ring = decjax.ring(N)
    target = decjax.algorithms.reference_target([0, 100], [1e-8, 1e-8], until=10)
    tx = decjax.consensus_control(optax.sgd(0.1), ring, target=target, max_rounds=5)
    x, state = quad.init_params(), tx.init(quad.init_params())
    rounds = []
    for _ in range(15):
        u, state = tx.update(_grads(quad, x), state, x)
        x = optax.apply_updates(x, u)
        rounds.append(int(state[1].last_rounds))
    assert rounds[:10] == [5] * 10  # capped: the target is out of reach
    assert rounds[10:] == [1] * 5  # uncontrolled after step 10


def test_simulate_records_gossip_rounds_and_bytes(quad):
    tx = decjax.consensus_control(optax.sgd(0.1), decjax.ring(N), target=1e-4)
    res = decjax.simulate(
        quad.loss,
        quad.init_params(),
        tx,
        quad.data,
        steps=40,
        eval_every=10,
        key=jax.random.key(0),
        progress=False,
    )
    rounds = res.metrics["gossip_rounds"]
    assert rounds.shape == (4,) and np.all(np.diff(rounds) >= 10)
    assert np.all(np.diff(res.metrics["bytes_sent"]) > 0)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: decjax.gradient_tracking(-1.0, decjax.ring(4)), ValueError, "learning_rate"),
        (lambda: decjax.gradient_tracking(0.1, decjax.ring(4), order="x"), ValueError, "order"),
        (lambda: decjax.d2(0.1, decjax.ring(8)), ValueError, r"lambda_min\(W\) > -1/3"),
        (lambda: decjax.d2(0.1, decjax.exponential(8)), ValueError, "symmetric"),
        (lambda: decjax.exact_diffusion(0.0, decjax.ring(4)), ValueError, "learning_rate"),
        (lambda: decjax.detag(0.1, decjax.ring(4), phase_length=0), ValueError, "phase_length"),
        (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum=1.0),
            ValueError,
            "gossip_momentum",
        ),
        (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum="fast"),
            ValueError,
            "gossip_momentum",
        ),
        (lambda: decjax.detag(0.1, decjax.one_peer_exponential(4)), ValueError, "static"),
        (lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), momentum=1.5), ValueError, "momentum"),
        (
            lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), buffer_decay=-0.1),
            ValueError,
            "buffer_decay",
        ),
        (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor="top_k"),
            TypeError,
            "Compressor",
        ),
        (
            lambda: decjax.choco_sgd(
                0.1, decjax.ring(4), compressor=decjax.gossip.sign(), consensus_step=0.0
            ),
            ValueError,
            "consensus_step",
        ),
        (lambda: decjax.gossip.top_k(0), ValueError, "k must be >= 1"),
        (lambda: decjax.gossip.top_k(3, fraction=0.1), ValueError, "exactly one"),
        (lambda: decjax.gossip.random_k(fraction=1.5), ValueError, "fraction"),
        (lambda: decjax.gossip.qsgd(0), ValueError, "levels"),
        (lambda: decjax.local_sgd(0.1, 4, every=0), ValueError, "every"),
        (lambda: decjax.gossip_pga(0.1, decjax.ring(4), every=-2), ValueError, "every"),
        (
            lambda: decjax.consensus_control(optax.sgd(0.1), decjax.ring(4), target=0.0),
            ValueError,
            "target",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1.0, max_rounds=0
            ),
            ValueError,
            "max_rounds",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1.0, estimator="psychic"
            ),
            ValueError,
            "estimator",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.random_matching(4, key=0), target=1.0
            ),
            ValueError,
            "spectral_gap_value",
        ),
        (lambda: decjax.consensus_control("sgd", decjax.ring(4), target=1.0), TypeError, "tx"),
        (lambda: decjax.algorithms.reference_target([1, 2], [1.0]), ValueError, "same"),
        (
            lambda: decjax.gossip.accelerated_mix(
                decjax.ring(4), jnp.ones(4), rounds=0, momentum=0.1
            ),
            ValueError,
            "rounds",
        ),
        (lambda: decjax.topology.lazy(decjax.ring(4), 0.0), ValueError, "kappa"),
    ],
)
def test_constructors_reject_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_compressor_larger_than_the_model_is_rejected_at_init():
    tx = decjax.choco_sgd(0.1, decjax.ring(4), compressor=decjax.gossip.top_k(100))
    with pytest.raises(ValueError, match="k=100 is larger than the dimension d=12"):
        tx.init(jnp.zeros((4, 12)))


def test_gradient_tracking_form_is_a_deprecated_alias_of_order(quad):
    with pytest.warns(DeprecationWarning, match="pass order="):
        old = decjax.gradient_tracking(0.1, decjax.ring(N), form="parallel")
    new = decjax.gradient_tracking(0.1, decjax.ring(N), order="parallel")
    np.testing.assert_array_equal(_run(old, quad, 50)[0], _run(new, quad, 50)[0])
