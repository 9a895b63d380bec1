"""Graph constructors (torus, grid, star, hypercube, random, networkx, matrices), validation."""

import jax
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax.topology import (
    from_matrix,
    spectral_gap,
    stack,
)


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
