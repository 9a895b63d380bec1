"""Accelerated gossip: the polynomial it applies, its rate on a ring, rounds without copies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from benchmarks.hlo import loop_copies
from decjax.gossip import accelerated_mix, optimal_momentum


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


def test_accelerated_mix_runs_its_rounds_without_copies():
    # two rounds per loop iteration: each round writes over the buffer of the round
    # before last, so XLA needs no copy of the carried (current, previous) buffers
    x = jax.random.normal(jax.random.key(0), (16, 64))
    run = jax.jit(
        lambda x: decjax.gossip.accelerated_mix(decjax.ring(16), x, rounds=6, momentum=0.3)
    )
    assert loop_copies(run.lower(x).compile(), x.shape) == 0
