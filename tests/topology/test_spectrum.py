"""Closed-form spectra of circulant graphs and analysis without dense matrices, at scale."""

import math

import jax
import numpy as np
import pytest
from helpers import all_topologies

import decjax
from decjax.topology import (
    effective_neighbors,
    spectral_gap,
    spectrum,
)


@pytest.mark.parametrize("n", [3, 4, 7, 12])
def test_ring_eigenvalues_match_closed_form(n):
    w = decjax.ring(n).numpy_matrices()[0]
    expected = np.sort((1 + 2 * np.cos(2 * np.pi * np.arange(n) / n)) / 3)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(w)), expected, atol=1e-6)
    lam = np.sort(np.abs(expected))[::-1][1]
    assert spectral_gap(decjax.ring(n)) == pytest.approx(1 - lam, abs=1e-6)


@pytest.mark.parametrize("n", [5, 8, 12, 16])
def test_circulant_closed_forms_equal_the_dense_analysis(n, monkeypatch):
    """Spectral gap and n_W from Fourier eigenvalues agree with the dense eigensolvers."""
    from decjax.topology import analysis

    circulant = [t for t in all_topologies(n) if spectrum.circulant_eigenvalues(t) is not None]
    assert {t.name for t in circulant} >= {
        "ring",
        "exponential",
        "one_peer_exponential",
        "complete",
    }
    closed = [
        (spectral_gap(t), effective_neighbors(t, 0.9), effective_neighbors(t, 0.5, mode="worst"))
        for t in circulant
    ]
    monkeypatch.setattr(analysis, "circulant_eigenvalues", lambda t: None)
    for t, got in zip(circulant, closed, strict=True):
        dense = (
            spectral_gap(t),
            effective_neighbors(t, 0.9),
            effective_neighbors(t, 0.5, mode="worst"),
        )
        # float32 weights: the closed form reads no self weight, the dense route does (1 +- 3e-8)
        np.testing.assert_allclose(got, dense, rtol=1e-6, atol=1e-7, err_msg=t.name)


def test_a_ring_of_65536_is_built_faulted_and_analysed_without_dense_matrices():
    """O(n k) host work: the dense route needs 32 GB per matrix at this size."""
    n = 65536
    ring = decjax.ring(n)
    faulty = decjax.topology.with_faults(ring, key=jax.random.key(0), link_failure=0.1)
    expected = 2.0 / 3.0 * (1.0 - math.cos(2.0 * math.pi / n))  # 1 - lambda_2
    assert spectral_gap(ring) == pytest.approx(expected, rel=1e-3)
    assert spectral_gap(faulty) == pytest.approx(expected, rel=1e-3)  # its base graph
    assert spectral_gap(decjax.exponential(n)) == pytest.approx(2.0 / 17.0, rel=1e-5)
    assert 1.0 < effective_neighbors(ring, 0.99) < n
    decjax.d2(0.1, decjax.topology.lazy(ring, 0.5))  # D²'s spectral check, closed form
    both = decjax.topology.stack([ring, decjax.exponential(n)])
    assert both.representation == "sparse" and both.neighbors.shape[-1] <= 18
