"""Topologies: constructors, conventions, validation and spectral analysis vs closed forms."""

import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from helpers import all_topologies

import decjax
from decjax.topology import (
    by_name,
    effective_neighbors,
    from_matrix,
    period_product,
    spectral_gap,
    spectrum,
    stack,
)


def _eig_gap(w: np.ndarray) -> float:
    """Independent gap: second largest |eigenvalue| of a matrix, numpy only."""
    eig = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
    return 1.0 - eig[1]


# -- construction and conventions ------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 8, 16])
def test_every_catalogued_topology_is_doubly_stochastic_and_nonnegative(n):
    for topo in all_topologies(n):
        mats = topo.numpy_matrices()
        assert mats.shape == (topo.period, n, n), topo
        assert np.all(mats >= 0), topo
        np.testing.assert_allclose(mats.sum(axis=2), 1.0, atol=1e-6, err_msg=topo.name)
        np.testing.assert_allclose(mats.sum(axis=1), 1.0, atol=1e-6, err_msg=topo.name)


def test_ring_convention_and_small_sizes():
    w = np.asarray(decjax.ring(6).matrix())
    assert w[0, 1] == pytest.approx(1 / 3) and w[0, 5] == pytest.approx(1 / 3)
    assert w[0, 2] == 0.0
    np.testing.assert_allclose(decjax.ring(2).matrix(), np.full((2, 2), 0.5))
    np.testing.assert_allclose(decjax.ring(1).matrix(), [[1.0]])


@pytest.mark.parametrize("n", [3, 4, 7, 12])
def test_ring_eigenvalues_match_closed_form(n):
    w = decjax.ring(n).numpy_matrices()[0]
    expected = np.sort((1 + 2 * np.cos(2 * np.pi * np.arange(n) / n)) / 3)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(w)), expected, atol=1e-6)
    lam = np.sort(np.abs(expected))[::-1][1]
    assert spectral_gap(decjax.ring(n)) == pytest.approx(1 - lam, abs=1e-6)


@pytest.mark.parametrize("n", [3, 5, 8, 12, 33])
def test_exponential_graph_neighbours_follow_powers_of_two(n):
    w = decjax.exponential(n).numpy_matrices()[0]
    k = math.ceil(math.log2(n))
    for i in range(n):
        expected = {i} | {(i + 2**j) % n for j in range(k) if 2**j <= n - 1}
        assert set(np.flatnonzero(w[i])) == expected
        np.testing.assert_allclose(w[i, sorted(expected)], 1 / (k + 1), rtol=1e-6)


@pytest.mark.parametrize("n", [4, 6, 8, 10, 16, 32, 64])
def test_static_exponential_spectral_gap_for_even_n(n):
    expected = 2 / (1 + math.ceil(math.log2(n)))
    assert spectral_gap(decjax.exponential(n)) == pytest.approx(expected, abs=1e-6)
    assert _eig_gap(decjax.exponential(n).numpy_matrices()[0]) == pytest.approx(expected, abs=1e-6)


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


@pytest.mark.parametrize("n", [3, 5, 9])
def test_star_gap_is_one_over_n(n):
    w = decjax.star(n).numpy_matrices()[0]
    assert w[0, 0] == pytest.approx(1 / n) and w[1, 1] == pytest.approx(1 - 1 / n)
    assert spectral_gap(decjax.star(n)) == pytest.approx(1 / n, abs=1e-6)


@pytest.mark.parametrize(("rows", "cols"), [(3, 3), (3, 5), (4, 4)])
def test_torus_eigenvalues_match_closed_form(rows, cols):
    w = decjax.torus(rows, cols).numpy_matrices()[0]
    a, b = np.meshgrid(np.arange(rows), np.arange(cols))
    lam = (1 + 2 * np.cos(2 * np.pi * a / rows) + 2 * np.cos(2 * np.pi * b / cols)) / 5
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(w)), np.sort(lam.ravel()), atol=1e-6)


def test_grid_has_no_wraparound_and_metropolis_weights():
    w = decjax.grid(3, 4).numpy_matrices()[0]
    assert w[0, 3] == 0 and w[0, 8] == 0  # no wrap along a row or column
    # corner (deg 2) to edge node (deg 3): 1 / (max(2, 3) + 1)
    assert w[0, 1] == pytest.approx(1 / 4)
    np.testing.assert_allclose(w, w.T, atol=1e-7)


def test_hypercube_neighbours_differ_in_one_bit():
    w = decjax.hypercube(16).numpy_matrices()[0]
    for i in range(16):
        nbrs = set(np.flatnonzero(w[i])) - {i}
        assert nbrs == {i ^ (1 << b) for b in range(4)}
    assert spectral_gap(decjax.hypercube(16)) == pytest.approx(2 / 5, abs=1e-6)


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


def test_erdos_renyi_is_connected_and_reproducible():
    a = decjax.erdos_renyi(20, 0.2, key=jax.random.key(3))
    b = decjax.erdos_renyi(20, 0.2, key=jax.random.key(3))
    c = decjax.erdos_renyi(20, 0.2, key=jax.random.key(4))
    np.testing.assert_array_equal(a.numpy_matrices(), b.numpy_matrices())
    assert not np.array_equal(a.numpy_matrices(), c.numpy_matrices())
    assert nx.is_connected(decjax.to_networkx(a))
    assert spectral_gap(a) > 0


def test_random_matching_pairs_workers_and_connects_over_a_period():
    topo = decjax.random_matching(10, key=jax.random.key(0), period=6)
    mats = topo.numpy_matrices()
    assert mats.shape == (6, 10, 10)
    off = mats * (1 - np.eye(10))
    assert np.all((off > 0).sum(axis=2) <= 1)
    np.testing.assert_allclose(off[off > 0], 0.5)
    np.testing.assert_allclose(mats, np.transpose(mats, (0, 2, 1)))
    assert spectral_gap(topo) > 0


def test_networkx_round_trip():
    for topo in [decjax.ring(7), decjax.star(6), decjax.exponential(8), decjax.grid(2, 3)]:
        back = decjax.from_networkx(decjax.to_networkx(topo), weights="weight")
        np.testing.assert_allclose(back.matrix(), topo.matrix(), atol=1e-6)
    assert isinstance(decjax.to_networkx(decjax.exponential(8)), nx.DiGraph)
    assert not isinstance(decjax.to_networkx(decjax.ring(8)), nx.DiGraph)


def test_from_networkx_metropolis_on_an_irregular_graph():
    graph = nx.path_graph(3)
    w = np.asarray(decjax.from_networkx(graph).matrix())
    expected = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(w, expected, atol=1e-6)


def test_from_matrix_time_varying_stack():
    w = np.stack([np.eye(2), np.full((2, 2), 0.5)])
    topo = from_matrix(w, require_connected=True)
    assert topo.period == 2 and topo.is_time_varying
    np.testing.assert_allclose(topo.matrix(3), np.full((2, 2), 0.5))


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones((2, 3)) / 3, "shape"),
        (np.array([[1.5, -0.5], [-0.5, 1.5]]), "non-negative"),
        (np.array([[0.5, 0.4], [0.5, 0.6]]), "row 0 sums to 0.9"),
        (np.array([[0.5, 0.5], [0.6, 0.4]]), "column 0 sums to 1.1"),
        (np.eye(3), "connected"),
        (np.full((2, 2), np.nan), "finite"),
    ],
)
def test_from_matrix_rejects_invalid_matrices(matrix, message):
    with pytest.raises(ValueError, match=message):
        from_matrix(matrix)


def test_from_matrix_opt_outs():
    assert from_matrix(np.eye(3), require_connected=False).n == 3
    row_only = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert from_matrix(row_only, require_doubly_stochastic=False).n == 2


def test_disconnected_union_over_a_period_is_rejected():
    w = np.stack([np.eye(4), np.eye(4)])
    w[0, :2, :2] = 0.5
    with pytest.raises(ValueError, match="union of its graphs over one period"):
        from_matrix(w)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: decjax.ring(0), ValueError, "n must be >= 1"),
        (lambda: decjax.ring(2.5), TypeError, "n must be an int"),
        (lambda: decjax.hypercube(12), ValueError, "power of two"),
        (lambda: decjax.torus(0, 3), ValueError, "rows must be >= 1"),
        (lambda: decjax.erdos_renyi(10, 0.0, key=0), ValueError, "p must be in"),
        (lambda: decjax.erdos_renyi(40, 0.01, key=0, max_tries=3), ValueError, "too small"),
        (lambda: decjax.erdos_renyi(10, 0.5, key="x"), TypeError, "key must be"),
        (lambda: decjax.random_matching(8, key=0, period=0), ValueError, "period must be"),
        (lambda: decjax.topology.periodic_average(4, every=0), ValueError, "every must be"),
        (lambda: decjax.from_networkx([1, 2]), TypeError, "networkx graph"),
        (lambda: decjax.from_networkx(nx.star_graph(3), weights="uniform"), ValueError, "regular"),
        (lambda: decjax.from_networkx(nx.path_graph(3), weights="w"), ValueError, "attribute"),
        (lambda: decjax.topology.by_name("moebius", 4), ValueError, "name must be one of"),
        (lambda: decjax.topology.from_offsets(4, [[0, 2]], [[0.5, 0.5]]), ValueError, "connected"),
        (lambda: decjax.topology.from_offsets(4, [[0, 1]], [[0.7, 0.7]]), ValueError, "sum to 1"),
        (
            lambda: decjax.topology.from_neighbor_lists([[0, 5]], [[0.5, 0.5]]),
            ValueError,
            "indices in",
        ),
        (lambda: stack([decjax.ring(4), decjax.ring(5)]), ValueError, "same n"),
        (lambda: stack([]), TypeError, "non-empty"),
    ],
)
def test_constructors_reject_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


# -- pytree behaviour ------------------------------------------------------------------------


def test_topology_passes_through_jit_and_stack_vmaps():
    topo = decjax.one_peer_exponential(8)
    mat = jax.jit(lambda t, s: t.matrix(s))(topo, 2)
    np.testing.assert_allclose(mat, topo.matrix(2))
    both = stack([decjax.ring(8), decjax.one_peer_exponential(8), decjax.complete(8)])
    assert both.weights.shape == (3, 3, 8, 8)  # periods 1, 3, 1 tiled to lcm 3
    mats = jax.vmap(lambda t: t.matrix(4))(both)
    np.testing.assert_allclose(mats[1], topo.matrix(4))
    np.testing.assert_allclose(mats[0], decjax.ring(8).matrix())


# -- effective number of neighbours ----------------------------------------------------------


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


def test_by_name_builds_every_name():
    for name in decjax.topology.NAMES:
        topo = by_name(name, 16)
        assert topo.n == 16
        assert jnp.allclose(topo.matrices().sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "topo",
    [
        decjax.ring(6),
        decjax.torus(2, 3),
        decjax.complete(6),
        decjax.one_peer_exponential(6),
        from_matrix(np.full((6, 6), 1 / 6)),
    ],
    ids=lambda t: t.representation + "-" + t.name,
)
def test_lazy_topology_is_kappa_w_plus_identity_in_every_representation(topo):
    lazy = decjax.topology.lazy(topo, 0.25)
    assert lazy.representation == topo.representation and lazy.period == topo.period
    expected = 0.25 * topo.numpy_matrices() + 0.75 * np.eye(6)[None]
    np.testing.assert_allclose(lazy.numpy_matrices(), expected, atol=1e-7)
    traced = jax.jit(lambda t: t.matrices())(lazy)  # the in-jit conversion agrees
    np.testing.assert_allclose(traced, expected, atol=1e-6)


# -- scale: analysis without dense matrices ---------------------------------------------


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


def test_stacked_topologies_keep_their_matrices_and_the_documented_shapes():
    members = [decjax.ring(8), decjax.one_peer_exponential(8), decjax.torus(2, 4)]
    both = decjax.topology.stack(members)
    assert both.representation == "sparse" and both.batch_shape == (3,)
    assert both.matrix(0).shape == (3, 8, 8)
    for i, t in enumerate(members):
        for step in range(4):
            np.testing.assert_allclose(both.matrix(step)[i], t.matrix(step), atol=1e-7)
    dense = decjax.topology.stack([decjax.ring(8), decjax.complete(8)])
    assert dense.representation == "dense" and dense.matrix(3).shape == (2, 8, 8)


def test_a_prime_torus_or_grid_by_name_is_refused():
    with pytest.raises(ValueError, match=r"n=13 has no such factorization"):
        decjax.topology.by_name("torus", 13)
    with pytest.raises(ValueError, match=r"grid needs n = rows x cols"):
        decjax.topology.by_name("grid", 7)


def test_non_finite_circulant_weights_are_refused():
    with pytest.raises(ValueError, match="must be finite"):
        decjax.topology.from_offsets(4, [[-1, 0, 1]], [[0.25, float("nan"), 0.25]])
