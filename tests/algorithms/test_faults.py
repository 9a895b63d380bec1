"""Stragglers and node churn: invariants, wrappers that keep the direct step, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from benchmarks.hlo import array_ops
from decjax.algorithms import ALGORITHMS, NAMES, TREE_ONLY, node_churn, stragglers
from decjax.topology import fault_statistics, with_faults

N, D = 8, 3


@pytest.mark.slow
# DASGD models unreliable links by delays and rejects a faulty topology (tested in test_dasgd).
# RelaySGD relays over fixed trees and rejects one too (test_relaysgd).
@pytest.mark.parametrize("name", [name for name in NAMES if name not in ("dasgd", *TREE_ONLY)])
def test_every_algorithm_runs_on_a_faulty_network_with_stragglers(name):
    faulty = with_faults(decjax.ring(N), key=jax.random.key(0), link_failure=0.2, node_failure=0.1)
    tx = stragglers(ALGORITHMS[name](0.05, faulty), [1.0, 0.5] * 4, key=jax.random.key(1))
    assert np.isfinite(_quadratic_run(tx).metrics["train_loss"]).all()
    # the same wrappers with nothing failing and nobody slow are the bare algorithm: the
    # faults and the straggler masks reduce exactly (float rounding: Sparse gathers against
    # the ring's rolls)
    calm = with_faults(decjax.ring(N), key=jax.random.key(0), link_failure=0.0)
    wrapped = stragglers(ALGORITHMS[name](0.05, calm), [1.0] * N, key=jax.random.key(1))
    bare = ALGORITHMS[name](0.05, decjax.ring(N))
    np.testing.assert_allclose(
        _quadratic_run(wrapped).params, _quadratic_run(bare).params, rtol=1e-5, atol=1e-6
    )


def _quadratic_run(tx):
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    return decjax.simulate(
        q.loss,
        q.init_params(),
        tx,
        q.data,
        steps=20,
        eval_every=10,
        key=jax.random.key(0),
        progress=False,
    )


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


@pytest.mark.parametrize(
    "wrapper", [pytest.param("stragglers", marks=pytest.mark.slow), "node_churn", "local_then"]
)
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
    assert set(info) == {"bytes_sent", "traffic"} and float(info["bytes_sent"]) > 0
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
