"""Circulant constructors: ring, exponential graphs, complete, solo, periodic averaging."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.topology import (
    period_product,
    spectral_gap,
)


def test_ring_convention_and_small_sizes():
    w = np.asarray(decjax.ring(6).matrix())
    assert w[0, 1] == pytest.approx(1 / 3) and w[0, 5] == pytest.approx(1 / 3)
    assert w[0, 2] == 0.0
    np.testing.assert_allclose(decjax.ring(2).matrix(), np.full((2, 2), 0.5))
    np.testing.assert_allclose(decjax.ring(1).matrix(), [[1.0]])


@pytest.mark.parametrize("n", [3, 5, 8, 12, 33])
def test_exponential_graph_neighbours_follow_powers_of_two(n):
    w = decjax.exponential(n).numpy_matrices()[0]
    k = math.ceil(math.log2(n))
    for i in range(n):
        expected = {i} | {(i + 2**j) % n for j in range(k) if 2**j <= n - 1}
        assert set(np.flatnonzero(w[i])) == expected
        np.testing.assert_allclose(w[i, sorted(expected)], 1 / (k + 1), rtol=1e-6)


@pytest.mark.parametrize("tau", [1, 2, 3, 4, 5])
def test_one_peer_exponential_averages_exactly_after_tau_steps_for_powers_of_two(tau):
    n = 2**tau
    topo = decjax.one_peer_exponential(n)
    assert topo.period == tau
    for start in range(tau):
        np.testing.assert_allclose(period_product(topo, start), np.full((n, n), 1 / n), atol=1e-7)
    assert spectral_gap(topo) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("n", [3, 6, 12, 20])
def test_one_peer_exponential_is_not_exact_otherwise(n):
    topo = decjax.one_peer_exponential(n)
    err = np.abs(period_product(topo) - 1 / n).max()
    assert err > 1e-2
    assert spectral_gap(topo) < 1 - 1e-3


def test_one_peer_exponential_has_one_peer_per_step():
    topo = decjax.one_peer_exponential(16)
    mats = topo.numpy_matrices()
    for t in range(topo.period):
        assert np.all((mats[t] > 0).sum(axis=1) == 2)
        np.testing.assert_allclose(mats[t][0, 2**t], 0.5)


def test_complete_and_solo():
    np.testing.assert_allclose(decjax.complete(5).matrix(), np.full((5, 5), 0.2), atol=1e-7)
    np.testing.assert_allclose(decjax.solo(5).matrix(), np.eye(5))
    assert spectral_gap(decjax.complete(5)) == pytest.approx(1.0)
    assert spectral_gap(decjax.solo(5)) == pytest.approx(0.0)


def test_periodic_average_averages_on_the_last_step_of_each_period():
    mats = decjax.topology.periodic_average(4, every=3).numpy_matrices()
    np.testing.assert_allclose(mats[0], np.eye(4))
    np.testing.assert_allclose(mats[1], np.eye(4))
    np.testing.assert_allclose(mats[2], np.full((4, 4), 0.25))


def test_non_finite_circulant_weights_are_refused():
    with pytest.raises(ValueError, match="must be finite"):
        decjax.topology.from_offsets(4, [[-1, 0, 1]], [[0.25, float("nan"), 0.25]])


def test_solo_gossip_is_free_and_periodic_averaging_still_averages():
    """solo's W = I: its gossip computes no average (once it averaged and scaled by 0), in
    jit and under a traced step alike; periodic averaging keeps its reduction."""
    x = jnp.arange(12.0).reshape(4, 3)
    solo = decjax.solo(4)
    jaxpr = str(jax.make_jaxpr(lambda v, t: solo.delta(v, t))(x, 0))
    assert "reduce_sum" not in jaxpr and "dot_general" not in jaxpr
    np.testing.assert_array_equal(jax.jit(solo.delta)(x, jnp.int32(3)), jnp.zeros_like(x))
    periodic = decjax.topology.periodic_average(4, every=2)
    np.testing.assert_allclose(periodic.delta(x, 1), x.mean(0, keepdims=True) - x, rtol=1e-6)
    np.testing.assert_array_equal(periodic.delta(x, 0), jnp.zeros_like(x))
