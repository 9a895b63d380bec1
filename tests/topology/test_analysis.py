"""Spectral gaps and the effective number of neighbours against closed forms."""

import math

import jax
import numpy as np
import pytest

import decjax
from decjax.topology import (
    effective_neighbors,
    from_matrix,
    spectral_gap,
)


def _eig_gap(w: np.ndarray) -> float:
    """Independent gap: second largest |eigenvalue| of a matrix, numpy only."""
    eig = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
    return 1.0 - eig[1]


@pytest.mark.parametrize("n", [4, 6, 8, 10, 16, 32, 64])
def test_static_exponential_spectral_gap_for_even_n(n):
    expected = 2 / (1 + math.ceil(math.log2(n)))
    assert spectral_gap(decjax.exponential(n)) == pytest.approx(expected, abs=1e-6)
    assert _eig_gap(decjax.exponential(n).numpy_matrices()[0]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n", [3, 5, 9])
def test_star_gap_is_one_over_n(n):
    w = decjax.star(n).numpy_matrices()[0]
    assert w[0, 0] == pytest.approx(1 / n) and w[1, 1] == pytest.approx(1 - 1 / n)
    assert spectral_gap(decjax.star(n)) == pytest.approx(1 / n, abs=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 0.99])
def test_effective_neighbors_of_complete_is_n_and_solo_is_one(gamma):
    assert effective_neighbors(decjax.complete(16), gamma) == pytest.approx(16, rel=1e-5)
    assert effective_neighbors(decjax.solo(16), gamma) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.95])
@pytest.mark.parametrize("d", [2, 3, 5])
def test_effective_neighbors_of_one_peer_exponential_closed_form(gamma, d):
    n = 2**d
    var = sum(gamma**k * 2.0 ** (-(k + 1)) for k in range(d)) + gamma**d / (n * (1 - gamma))
    expected = 1 / ((1 - gamma) * var)
    topo = decjax.one_peer_exponential(n)
    assert effective_neighbors(topo, gamma) == pytest.approx(expected, rel=1e-5)
    assert effective_neighbors(topo, gamma, mode="worst") == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("rho", [0.1, 0.5])
def test_effective_neighbors_of_adversarial_mix_closed_form(rho):
    n, gamma = 12, 0.9
    w = rho * np.full((n, n), 1 / n) + (1 - rho) * np.eye(n)
    var = (1 / (1 - gamma) + (n - 1) * (1 - rho) ** 2 / (1 - gamma * (1 - rho) ** 2)) / n
    expected = 1 / ((1 - gamma) * var)
    assert effective_neighbors(from_matrix(w), gamma) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n", [5, 8, 13])
def test_effective_neighbors_of_directed_exponential_matches_fourier_closed_form(n):
    gamma = 0.8
    first_row = decjax.exponential(n).numpy_matrices()[0][0]
    lam = np.fft.fft(first_row)  # circulant eigenvalues (normal matrix)
    var = np.mean(np.abs(lam) ** 2 / (1 - gamma * np.abs(lam) ** 2))
    expected = 1 / ((1 - gamma) * var)
    assert effective_neighbors(decjax.exponential(n), gamma) == pytest.approx(expected, rel=1e-5)


def test_effective_neighbors_ring_matches_truncated_series():
    n, gamma = 10, 0.7
    w = decjax.ring(n).numpy_matrices()[0]
    var, p = 0.0, np.eye(n)
    for t in range(400):
        p = w @ p
        var += gamma**t * np.sum(p**2) / n
    expected = 1 / ((1 - gamma) * var)
    assert effective_neighbors(decjax.ring(n), gamma) == pytest.approx(expected, rel=1e-6)
    # gamma = 0 reduces to 1 / mean_i sum_j W_ij^2
    assert effective_neighbors(decjax.ring(n), 0.0) == pytest.approx(3.0, rel=1e-5)


def test_effective_neighbors_time_varying_matches_monte_carlo_free_series():
    topo = decjax.random_matching(6, key=jax.random.key(1), period=3)
    mats, gamma = topo.numpy_matrices(), 0.6
    variances = []
    for s in range(3):
        var, p = 0.0, np.eye(6)
        for k in range(300):
            p = p @ mats[(s - k) % 3]
            var += gamma**k * np.sum(p**2) / 6
        variances.append(var)
    expected = 1 / ((1 - gamma) * np.mean(variances))
    assert effective_neighbors(topo, gamma) == pytest.approx(expected, rel=1e-6)


def test_effective_neighbors_rejects_bad_gamma_and_mode():
    with pytest.raises(ValueError, match="gamma must be in"):
        effective_neighbors(decjax.ring(4), 1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        effective_neighbors(decjax.ring(4), 0.5, mode="median")
    with pytest.raises(TypeError, match="topology must be a Topology"):
        spectral_gap(np.eye(3))
