"""DASGD: delayed delivery against a per-message reference, exact staleness, reductions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import step_loop

import decjax
from decjax.algorithms import (
    fixed_delay,
    geometric_delay,
    per_link_delay,
    uniform_delay,
)


def _run(tx, params, grad_fn, ticks):
    """``ticks`` steps; the params, the state and the recorded metrics (bytes, staleness)."""
    return step_loop(tx, params, lambda p, t: grad_fn(p), ticks)


def _reference(x0, grad_fn, eta, delays, ticks, adjacency):
    """Message-by-message simulation in Python: returns params and exact staleness list."""
    n = x0.shape[0]
    x = np.array(x0, dtype=np.float64)
    pending = []  # (arrival_tick, receiver, sender, send_tick, update)
    applied = [set() for _ in range(n)]  # (sender, send_tick) applied by each worker
    history = {}  # applied sets at the start of each tick: history[(worker, tick)]
    staleness = []
    for t in range(ticks):
        for i in range(n):
            history[(i, t)] = set(applied[i])
        g = np.asarray(grad_fn(jnp.asarray(x, jnp.float32)), np.float64)
        own = -eta * g
        for i in range(n):
            x[i] += own[i]
            applied[i].add((i, t))
            for j in range(n):
                if j != i and adjacency[j, i]:
                    pending.append((t + delays[j][i], j, i, t, own[i].copy()))
        for msg in [m for m in pending if m[0] == t]:
            _, i, j, s, u = msg
            staleness.append(len(history[(i, t)] - history[(j, s)]))
            x[i] += u
            applied[i].add((j, s))
        pending = [m for m in pending if m[0] != t]
    return x, staleness


def test_delivery_and_staleness_match_a_message_by_message_reference():
    n, ticks, eta = 4, 12, 0.1
    delays = np.array([[0, 2, 1, 3], [1, 0, 2, 0], [3, 1, 0, 2], [2, 2, 1, 0]])
    q = decjax.problems.quadratics(n, 2, key=jax.random.key(0))
    grad_fn = jax.jit(lambda x: jax.vmap(jax.grad(q.loss))(x, q.data))
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    tx = decjax.dasgd(eta, delays=per_link_delay(delays), n=n)
    got, _, recorded = _run(tx, x0, grad_fn, ticks)
    expected, staleness = _reference(x0, grad_fn, eta, delays, ticks, ~np.eye(n, dtype=bool))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert float(recorded["staleness_avg"]) == pytest.approx(np.mean(staleness), rel=1e-6)
    assert int(recorded["staleness_max"]) == max(staleness)


def test_random_delays_on_a_ring_match_the_reference_delays_they_drew():
    """Replaying the delays DASGD drew (stored in its ring buffer) through the reference."""
    n, ticks, eta = 5, 6, 0.05
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(2))
    grad_fn = jax.jit(lambda x: jax.vmap(jax.grad(q.loss))(x, q.data))
    x0 = jnp.zeros((n, 3))
    tx = decjax.dasgd(eta, decjax.ring(n), delays=uniform_delay(ticks), key=jax.random.key(7))
    got, state, _ = _run(tx, x0, grad_fn, ticks)
    # the ring buffer holds every tick's delays (buffer = max_delay + 1 > ticks)
    drawn = np.asarray(state.delays).transpose(1, 0, 2)  # (tick slot, receiver, sender)
    adjacency = decjax.ring(n).numpy_matrices()[0] > 0
    x, pending = np.zeros((n, 3)), []
    for t in range(ticks):
        g = np.asarray(grad_fn(jnp.asarray(x, jnp.float32)), np.float64)
        x += -eta * g
        for i, j in itertools.product(range(n), range(n)):
            if i != j and adjacency[i, j]:
                pending.append((t + drawn[t][i, j], i, -eta * g[j]))
        for arrival, i, u in pending:
            if arrival == t:
                x[i] += u
    np.testing.assert_allclose(got, x, atol=1e-5)


def test_zero_delay_is_synchronous_sgd_on_the_summed_gradient():
    n = 6
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(0))
    res = decjax.simulate(
        q.loss,
        q.init_params(),
        decjax.dasgd(0.02, delays=fixed_delay(0), n=n),
        q.data,
        steps=50,
        eval_every=10,
        key=jax.random.key(0),
        progress=False,
    )
    x = jnp.zeros(3)
    for _ in range(50):
        x = x - 0.02 * n * jax.grad(q.objective)(x)  # sum_j grad f_j = n grad f
    np.testing.assert_allclose(res.params, jnp.broadcast_to(x, (n, 3)), rtol=1e-5, atol=1e-6)
    assert res.final("staleness_avg") == 0.0
    assert res.final("consensus_distance") < 1e-12


@pytest.mark.slow
def test_bounded_staleness_converges_with_a_smaller_step_and_degrades_with_delay():
    n = 8
    q = decjax.problems.quadratics(n, 4, key=jax.random.key(0))
    final, s_avg = [], []
    for bound in (0, 4, 16):
        res = decjax.simulate(
            q.loss,
            q.init_params(),
            decjax.dasgd(0.005, delays=uniform_delay(bound), n=n),
            q.data,
            steps=600,
            eval_every=100,
            key=jax.random.key(1),
            eval_fn=q.eval_fn,
            progress=False,
        )
        final.append(res.final("test_distance_to_optimum"))
        s_avg.append(res.final("staleness_avg"))
    assert final[2] < 0.05  # still converges (close to x*) at bound 16
    assert final[0] <= final[1] <= final[2]
    assert s_avg[0] == 0.0 < s_avg[1] < s_avg[2]
    # with a step that is fine synchronously, large delays diverge
    res = decjax.simulate(
        q.loss,
        q.init_params(),
        decjax.dasgd(0.1, delays=uniform_delay(16), n=n),
        q.data,
        steps=300,
        eval_every=100,
        key=jax.random.key(1),
        on_divergence="ignore",
        eval_fn=q.eval_fn,
        progress=False,
    )
    assert not res.final("test_distance_to_optimum") < 1e-3


@pytest.mark.slow
def test_logistic_regression_on_digits_trains_under_delay():
    ds = decjax.data.load_digits()
    n = 8
    data = decjax.data.distribute(ds, n, "iid", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    acc = []
    for bound in (0, 8):
        res = decjax.simulate(
            model.loss,
            params,
            decjax.dasgd(0.05, delays=uniform_delay(bound), n=n),
            data,
            steps=150,
            batch_size=8,
            eval_every=50,
            key=jax.random.key(0),
            eval_fn=model.eval_fn,
            eval_data=(ds.x_test, ds.y_test),
            progress=False,
        )
        acc.append(res.final("test_accuracy"))
    assert min(acc) > 0.85


def test_stragglers_send_fewer_updates():
    n = 4
    x = jnp.zeros((n, 10))
    full = decjax.dasgd(0.1, delays=fixed_delay(1), n=n)
    slow = decjax.dasgd(
        0.1, delays=fixed_delay(1), n=n, speeds=[1.0, 1.0, 0.5, 0.5], profile="fixed"
    )
    *_, r_full = _run(full, x, jnp.ones_like, 8)
    *_, r_slow = _run(slow, x, jnp.ones_like, 8)
    assert float(r_full["bytes_sent"]) == 8 * 3 * 10 * 4
    assert float(r_slow["bytes_sent"]) == pytest.approx(0.75 * float(r_full["bytes_sent"]))


def test_geometric_delays_are_truncated():
    d = geometric_delay(0.2, 5).sample(jax.random.key(0), 200)
    assert int(d.min()) == 0 and int(d.max()) == 5
    assert 1.0 < float(d.mean()) < 4.0


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: fixed_delay(-1), ValueError, "delay must be >= 0"),
        (lambda: uniform_delay(-2), ValueError, "max_delay must be >= 0"),
        (lambda: geometric_delay(0.0, 4), ValueError, "p must be in"),
        (lambda: per_link_delay([[0, -1], [1, 0]]), ValueError, "non-negative"),
        (lambda: per_link_delay([1, 2]), ValueError, r"\(n, n\)"),
        (lambda: decjax.dasgd(0.1, delays=fixed_delay(1)), ValueError, "give n"),
        (lambda: decjax.dasgd(0.1, delays=3, n=4), TypeError, "Delays"),
        (lambda: decjax.dasgd(-0.1, delays=fixed_delay(1), n=4), ValueError, "learning_rate"),
        (
            lambda: decjax.dasgd(0.1, delays=fixed_delay(1), n=4, speeds=[1.0, 2.0, 1.0, 1.0]),
            ValueError,
            "speeds must be in",
        ),
        (
            lambda: decjax.dasgd(0.1, decjax.ring(4), delays=fixed_delay(1), n=5),
            ValueError,
            "does not match",
        ),
        (
            lambda: decjax.dasgd(
                0.1,
                decjax.topology.with_faults(decjax.ring(4), key=jax.random.key(0)),
                delays=fixed_delay(1),
            ),
            ValueError,
            "without faults",
        ),
    ],
)
def test_bad_arguments_are_rejected(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_params_of_the_wrong_size_are_rejected_at_init():
    with pytest.raises(ValueError, match="built for 4"):
        decjax.dasgd(0.1, delays=fixed_delay(1), n=4).init(jnp.zeros((5, 2)))
