"""Link failures, node churn and stragglers: realized matrices, invariants, wrappers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from benchmarks.hlo import array_ops
from decjax.algorithms import ALGORITHMS, NAMES, node_churn, stragglers
from decjax.topology import fault_statistics, realized_matrices, with_faults

N, D = 8, 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "base",
    [
        decjax.ring(N),
        decjax.torus(2, 4),
        decjax.star(N),
        decjax.complete(N),
        decjax.hypercube(N),
        decjax.random_matching(N, key=0),
    ],
    ids=lambda t: t.name,
)
def test_without_failures_the_base_weights_are_reproduced(base):
    faulty = with_faults(base, key=jax.random.key(0))
    np.testing.assert_allclose(
        realized_matrices(faulty, range(base.period)), base.numpy_matrices(), atol=1e-6
    )


def test_self_reweighting_reproduces_any_symmetric_matrix():
    w = np.full((4, 4), 0.1) + np.diag([0.6] * 4)
    base = decjax.from_matrix(w)
    faulty = with_faults(base, key=jax.random.key(0), reweight="self")
    np.testing.assert_allclose(realized_matrices(faulty, [0])[0], w, atol=1e-6)


@pytest.mark.parametrize("reweight", ["metropolis", "self"])
def test_realized_matrices_stay_symmetric_doubly_stochastic(reweight):
    faulty = with_faults(
        decjax.torus(3, 3),
        key=jax.random.key(1),
        link_failure=0.4,
        node_failure=0.2,
        reweight=reweight,
    )
    mats = realized_matrices(faulty, range(30))
    np.testing.assert_allclose(mats, np.transpose(mats, (0, 2, 1)), atol=1e-7)
    np.testing.assert_allclose(mats.sum(axis=2), 1.0, atol=1e-6)
    assert np.all(mats >= -1e-7)
    base = decjax.torus(3, 3).numpy_matrices()[0]
    assert np.all((mats > 0) <= (base > 0)[None])  # only existing edges survive


def test_failure_rates_match_the_probabilities():
    stats = fault_statistics(
        with_faults(decjax.ring(32), key=jax.random.key(2), link_failure=0.3), range(300)
    )
    assert stats["fraction_links_lost"] == pytest.approx(0.3, abs=0.03)
    assert stats["fraction_nodes_down"] == 0.0
    nodes = fault_statistics(
        with_faults(decjax.ring(32), key=jax.random.key(2), node_failure=0.2), range(300)
    )
    assert nodes["fraction_nodes_down"] == pytest.approx(0.2, abs=0.03)


@pytest.mark.slow
def test_effective_spectral_gap_shrinks_as_links_fail():
    gaps = [
        fault_statistics(
            with_faults(decjax.ring(16), key=jax.random.key(0), link_failure=p), range(200)
        )["effective_spectral_gap"]
        for p in (0.0, 0.3, 0.6)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    # no failures: 1 - sqrt(lambda_2(W^T W)) = 1 - |lambda_2(W)| for a symmetric W
    assert gaps[0] == pytest.approx(decjax.spectral_gap(decjax.ring(16)), rel=1e-4)


def test_down_nodes_are_isolated_for_whole_blocks():
    faulty = with_faults(decjax.ring(N), key=jax.random.key(3), node_failure=0.3, down_steps=4)
    alive = np.stack([np.asarray(decjax.topology.faults.node_alive(faulty, t)) for t in range(16)])
    assert np.all(alive[0:4] == alive[0]) and np.all(alive[4:8] == alive[4])
    assert (~alive).any()
    for t in range(16):
        m = np.asarray(faulty.matrix(t))
        for i in np.flatnonzero(~alive[t]):
            np.testing.assert_allclose(m[i], np.eye(N)[i], atol=1e-7)


def test_link_failure_schedule_is_cycled():
    faulty = with_faults(decjax.ring(N), key=jax.random.key(0), link_failure=[0.0, 1.0])
    mats = realized_matrices(faulty, range(4))
    np.testing.assert_allclose(mats[0], decjax.ring(N).numpy_matrices()[0], atol=1e-6)
    np.testing.assert_allclose(mats[1], np.eye(N), atol=1e-7)
    np.testing.assert_allclose(mats[2], mats[0], atol=1e-7)


def test_gossip_on_a_faulty_topology_is_the_realized_matrix_without_recompiling():
    faulty = with_faults(decjax.torus(2, 4), key=jax.random.key(4), link_failure=0.5)
    x = jax.random.normal(jax.random.key(0), (N, D))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def gossip(x, t):
        return decjax.mix(faulty, x, t), decjax.gossip.messages_per_worker(faulty, t)

    for t in range(6):
        y, messages = gossip(x, jnp.int32(t))
        m = np.asarray(faulty.matrix(t))
        np.testing.assert_allclose(y, m @ np.asarray(x), atol=1e-6)
        np.testing.assert_allclose(y.mean(0), x.mean(0), atol=1e-6)
        assert float(messages) == pytest.approx(((m > 0) & ~np.eye(N, dtype=bool)).sum() / N)


def test_same_key_same_failures_and_lazy_scaling():
    a = with_faults(decjax.ring(N), key=jax.random.key(9), link_failure=0.5)
    b = with_faults(decjax.ring(N), key=jax.random.key(9), link_failure=0.5)
    np.testing.assert_array_equal(realized_matrices(a, range(5)), realized_matrices(b, range(5)))
    lazy = decjax.topology.lazy(a, 0.5)
    np.testing.assert_allclose(
        realized_matrices(lazy, range(5)),
        0.5 * realized_matrices(a, range(5)) + 0.5 * np.eye(N),
        atol=1e-6,
    )


@pytest.mark.slow
# DASGD models unreliable links by delays and rejects a faulty topology (tested in test_dasgd).
@pytest.mark.parametrize("name", [name for name in NAMES if name != "dasgd"])
def test_every_algorithm_runs_on_a_faulty_network_with_stragglers(name):
    faulty = with_faults(decjax.ring(N), key=jax.random.key(0), link_failure=0.2, node_failure=0.1)
    tx = stragglers(ALGORITHMS[name](0.05, faulty), [1.0, 0.5] * 4, key=jax.random.key(1))
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    res = decjax.simulate(
        q.loss,
        q.init_params(),
        tx,
        q.data,
        steps=20,
        eval_every=10,
        key=jax.random.key(0),
        progress=False,
    )
    assert np.isfinite(res.metrics["train_loss"]).all()


def test_stragglers_feed_stale_or_zero_gradients_on_inactive_steps():
    speeds = [1.0, 0.5]
    x = jnp.zeros((2, 1))
    grads = [jnp.array([[1.0], [2.0]]), jnp.array([[3.0], [4.0]])]
    for mode in ("stale", "zero"):
        tx = stragglers(
            decjax.per_worker(optax.sgd(1.0)),
            speeds,
            key=jax.random.key(0),
            profile="fixed",
            mode=mode,
        )
        state = tx.init(x)
        u0, state = tx.update(grads[0], state, x)
        u1, state = tx.update(grads[1], state, x)
        # "fixed" speed 0.5: worker 1 is active on steps 1, 3, ... (floor((t+1)/2) > floor(t/2))
        assert float(u0[0, 0]) == -1.0 and float(u1[0, 0]) == -3.0
        assert float(u0[1, 0]) == 0.0
        assert float(u1[1, 0]) == -4.0
        u2, state = tx.update(grads[0], state, x)  # step 2: worker 1 inactive again
        assert float(u2[1, 0]) == (-4.0 if mode == "stale" else 0.0)


def test_stragglers_with_full_speed_change_nothing():
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    base = decjax.gradient_tracking(0.1, decjax.ring(N))
    wrapped = stragglers(
        decjax.gradient_tracking(0.1, decjax.ring(N)), [1.0] * N, key=jax.random.key(0)
    )
    out = []
    for tx in (base, wrapped):
        res = decjax.simulate(
            q.loss,
            q.init_params(),
            tx,
            q.data,
            steps=30,
            eval_every=10,
            key=jax.random.key(0),
            progress=False,
        )
        out.append(res.params)
    # the same arithmetic; the two programs may fuse differently (float32 rounding)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("restart", ["average", "stale"])
def test_node_churn_freezes_departed_workers_and_restarts_them(restart):
    faulty = with_faults(decjax.ring(N), key=jax.random.key(5), node_failure=0.3, down_steps=3)
    tx = node_churn(decjax.dpsgd(0.1, faulty), faulty, restart=restart)
    x = jax.random.normal(jax.random.key(0), (N, D))
    state = tx.init(x)
    update = jax.jit(tx.update)
    seen_rejoin = False
    for t in range(30):
        alive = np.asarray(decjax.topology.faults.node_alive(faulty, t))
        was = np.asarray(decjax.topology.faults.node_alive(faulty, max(t - 1, 0)))
        g = jnp.ones((N, D))
        u, state = update(g, state, x)
        new = np.asarray(x + u)
        for i in range(N):
            if not alive[i]:
                np.testing.assert_array_equal(new[i], np.asarray(x)[i])
            elif t > 0 and not was[i]:
                seen_rejoin = True
                nbrs = [j for j in ((i - 1) % N, (i + 1) % N) if alive[j]]
                if restart == "average" and nbrs:
                    np.testing.assert_allclose(new[i], np.asarray(x)[nbrs].mean(0), atol=1e-6)
        x = x + u
    assert seen_rejoin


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), link_failure=1.5),
            ValueError,
            "link_failure",
        ),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), link_failure=[0.1, -0.1]),
            ValueError,
            "link_failure",
        ),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), node_failure=1.0),
            ValueError,
            "node_failure",
        ),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), down_steps=0),
            ValueError,
            "down_steps",
        ),
        (
            lambda: with_faults(decjax.exponential(8), key=jax.random.key(0)),
            ValueError,
            "symmetric",
        ),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), reweight="uniform"),
            ValueError,
            "reweight",
        ),
        (lambda: with_faults(decjax.ring(4), key="3"), TypeError, "key"),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), link_failure=float("nan")),
            ValueError,
            "link_failure must be finite",
        ),
        (
            lambda: with_faults(decjax.ring(4), key=jax.random.key(0), node_failure="0.1"),
            TypeError,
            "node_failure",
        ),
        (
            lambda: stragglers(
                decjax.dpsgd(0.1, decjax.ring(4)), [1.0, 0.0], key=jax.random.key(0)
            ),
            ValueError,
            "speeds must be in",
        ),
        (
            lambda: stragglers(
                decjax.dpsgd(0.1, decjax.ring(4)), [1.0], key=jax.random.key(0), mode="skip"
            ),
            ValueError,
            "mode",
        ),
        (
            lambda: node_churn(decjax.dpsgd(0.1, decjax.ring(4)), decjax.ring(4)),
            ValueError,
            "with_faults",
        ),
        (lambda: fault_statistics(decjax.ring(4), range(3)), ValueError, "with_faults"),
    ],
)
def test_bad_arguments_are_rejected(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_straggler_speeds_must_match_the_workers():
    tx = stragglers(decjax.dpsgd(0.1, decjax.ring(4)), [1.0, 0.5], key=jax.random.key(0))
    with pytest.raises(ValueError, match="speeds has 2 entries"):
        tx.init(jnp.zeros((4, 2)))


def _counting(tx):
    """``tx`` whose direct ``step`` records that it was used (at trace time)."""
    used = []

    def step(grads, state, params, **extra):
        used.append(True)
        return tx.step(grads, state, params, **extra)

    return decjax.algorithms.DecentralizedTransformation(tx.init, tx.update, step), used


def _wrapped(wrapper, inner, flaky):
    n = flaky.n
    if wrapper == "stragglers":
        return stragglers(inner, [1.0] * (n // 2) + [0.5] * (n // 2), key=jax.random.key(1))
    if wrapper == "node_churn":
        return node_churn(inner, flaky)
    return decjax.algorithms.local_then(decjax.per_worker(optax.scale(-0.1)), inner)


WRAPPERS = ["stragglers", "node_churn", "local_then"]


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_wrappers_keep_the_direct_step_fast_path(wrapper):
    """stragglers and node_churn used to drop the wrapped algorithm's direct step (new params
    directly, one pass over the params fewer): simulate's apply_step now reaches it, the
    result equals the optax path (update, then apply_updates), and the record comes through."""
    n = 8
    flaky = decjax.topology.with_faults(
        decjax.ring(n), key=jax.random.key(0), node_failure=0.2, down_steps=2
    )
    inner, used = _counting(decjax.combine(flaky))
    tx = _wrapped(wrapper, inner, flaky)
    assert isinstance(tx, decjax.algorithms.StepTransformation)
    params = jax.random.normal(jax.random.key(2), (n, 3))
    state_a = state_b = tx.init(params)
    fast = slow = params
    for t in range(6):
        grads = jax.random.normal(jax.random.fold_in(jax.random.key(3), t), (n, 3))
        fast, state_a, info = decjax.algorithms.apply_step(tx, grads, state_a, fast)
        updates, state_b = tx.update(grads, state_b, slow)
        slow = optax.apply_updates(slow, updates)
    assert used, "the wrapped algorithm's step was not used"
    assert set(info) == {"bytes_sent"} and float(info["bytes_sent"]) > 0
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_the_compiled_fast_path_makes_fewer_params_sized_passes(wrapper):
    """In the compiled program, the direct step writes fewer params-sized arrays than
    update + apply_updates (which adds ``x + (W(x + u) - x)``): a wrapper that lost the
    fast path would compile both to the same program."""
    n, d = 16, 512
    flaky = decjax.topology.with_faults(
        decjax.ring(n), key=jax.random.key(0), node_failure=0.2, down_steps=2
    )
    tx = _wrapped(wrapper, decjax.combine(flaky), flaky)
    params = jnp.ones((n, d))
    state = tx.init(params)

    def fast(g, s, p):
        return decjax.algorithms.apply_step(tx, g, s, p)[:2]

    def slow(g, s, p):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    passes = [
        array_ops(jax.jit(f).lower(params, state, params).compile(), (n, d)) for f in (fast, slow)
    ]
    assert passes[0] < passes[1], passes
