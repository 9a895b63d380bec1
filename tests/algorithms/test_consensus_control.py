"""Consensus control: adaptive rounds, target schedules, recorded rounds and bytes."""

import jax
import numpy as np
import optax
import pytest
from helpers import quadratic_grads, scan_run

import decjax

N, D = 8, 4


@pytest.mark.parametrize("estimator", ["gossip", "exact"])
def test_consensus_control_adapts_rounds_to_reach_the_target(estimator, quad):
    ring = decjax.ring(N)
    loose = decjax.consensus_control(optax.sgd(0.1), ring, target=1e-1, estimator=estimator)
    tight = decjax.consensus_control(
        optax.sgd(0.1), ring, target=1e-6, estimator=estimator, max_rounds=200
    )
    x_loose, s_loose = scan_run(loose, quad, 50)
    x_tight, s_tight = scan_run(tight, quad, 50)
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
        u, state = tx.update(quadratic_grads(quad, x), state, x)
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
