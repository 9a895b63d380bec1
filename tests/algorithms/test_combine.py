"""per_worker, combine, decentralize: reductions to independent runs, rounds, schedules, vmaps."""

import chex
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


def test_per_worker_equals_independent_runs_of_any_optax_chain(key):
    inner = optax.chain(
        optax.clip_by_global_norm(0.5),
        optax.adam(optax.linear_schedule(0.1, 0.01, 20)),
    )
    x = jax.random.normal(key, (N, D))
    grads = [jax.random.normal(jax.random.fold_in(key, t), (N, D)) for t in range(6)]
    tx = decjax.per_worker(inner)
    state, xs = tx.init(x), x
    for g in grads:
        u, state = tx.update(g, state, xs)
        xs = optax.apply_updates(xs, u)
    for i in range(N):  # each worker alone
        s, xi = inner.init(x[i]), x[i]
        for g in grads:
            u, s = inner.update(g[i], s, xi)
            xi = optax.apply_updates(xi, u)
        np.testing.assert_allclose(xs[i], xi, rtol=1e-6, atol=1e-6)


def test_combine_counts_rounds_for_time_varying_graphs(quad):
    """One-peer exponential with tau rounds per step averages exactly every step."""
    tx = decjax.dpsgd(0.1, decjax.one_peer_exponential(N), rounds=3)
    state = tx.init(jnp.zeros((N, D)))
    x = jax.random.normal(jax.random.key(1), (N, D))
    new, state, info = tx.step(quadratic_grads(quad, x), state, x)
    assert int(state[1].count) == 1
    assert float(info["bytes_sent"]) == 3 * 1 * D * 4  # 3 rounds, one peer, D floats
    assert float(decjax.consensus_distance(new)) < 1e-10


def test_decentralize_makes_adam_decentralized_and_preserves_average_update(quad, key):
    tx = decjax.decentralize(optax.adam(0.01), decjax.exponential(N))
    inner = decjax.per_worker(optax.adam(0.01))
    x = jax.random.normal(key, (N, D))
    g = quadratic_grads(quad, x)
    u, _ = tx.update(g, tx.init(x), x)
    u_local, _ = inner.update(g, inner.init(x), x)
    # gossip moves models toward each other but keeps their average where adam put it
    np.testing.assert_allclose(u.mean(axis=0), u_local.mean(axis=0), atol=1e-6)
    assert float(decjax.consensus_distance(x + u)) < float(decjax.consensus_distance(x + u_local))


def test_vmap_over_learning_rates_compiles_once(quad):
    @jax.jit
    @jax.vmap
    @chex.assert_max_traces(n=1)
    def run(lr):
        tx = decjax.dpsgd(lr, decjax.ring(N))
        x, state = jnp.zeros((N, D)), tx.init(jnp.zeros((N, D)))

        def body(carry, _):
            x, state = carry
            u, state = tx.update(quadratic_grads(quad, x), state, x)
            return (optax.apply_updates(x, u), state), None

        (x, _), _ = jax.lax.scan(body, (x, state), None, length=50)
        return x

    lrs = jnp.array([0.01, 0.05, 0.1])
    out = run(lrs)
    for i, lr in enumerate([0.01, 0.05, 0.1]):
        np.testing.assert_allclose(
            out[i],
            scan_run(decjax.dpsgd(lr, decjax.ring(N)), quad, 50, jnp.zeros((N, D)))[0],
            atol=1e-5,
        )


def test_schedule_as_learning_rate(quad):
    sched = optax.exponential_decay(0.1, 10, 0.5)
    x = scan_run(decjax.dpsgd(sched, decjax.complete(N)), quad, 5, jnp.zeros((N, D)))[0]
    central, xc = optax.sgd(sched), jnp.zeros(D)
    s = central.init(xc)
    for _ in range(5):
        u, s = central.update(jax.grad(quad.objective)(xc), s, xc)
        xc = optax.apply_updates(xc, u)
    np.testing.assert_allclose(x[0], xc, atol=1e-6)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: decjax.dpsgd(-0.1, decjax.ring(4)), ValueError, "learning_rate must be > 0"),
        (lambda: decjax.dpsgd("0.1", decjax.ring(4)), TypeError, "learning_rate must be"),
        (lambda: decjax.dpsgd(0.1, decjax.ring(4), momentum=1.0), ValueError, "momentum must be"),
        (lambda: decjax.dpsgd(0.1, decjax.ring(4), nesterov=True), ValueError, "momentum > 0"),
        (lambda: decjax.dpsgd(0.1, decjax.ring(4), order="cta"), ValueError, "order must be"),
        (lambda: decjax.dpsgd(0.1, np.eye(4)), TypeError, "topology must be a Topology"),
        (lambda: decjax.dpsgd(0.1, decjax.ring(4), rounds=0), ValueError, "rounds must be"),
        (lambda: decjax.per_worker(lambda g: g), TypeError, "GradientTransformation"),
        (
            lambda: decjax.combine(decjax.star(4), backend="shift"),
            ValueError,
            "can be mixed with",
        ),
    ],
)
def test_constructors_reject_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_combine_requires_params():
    tx = decjax.combine(decjax.ring(4))
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones((4,)), tx.init(jnp.ones((4,))))
