"""Fastest-mixing weights against closed forms and Metropolis-Hastings."""

import jax
import networkx as nx
import numpy as np
import pytest
from helpers import all_topologies

import decjax
from decjax.topology.optimal import fastest_mixing, graph_edges, slem

SIZES = [16, pytest.param(32, marks=pytest.mark.slow)]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("n", SIZES)
def test_the_path_reaches_its_known_optimum(n):
    """Boyd et al.: the fastest chain on a path has weight 1/2 on every edge, SLEM cos(pi/n)."""
    topo = fastest_mixing(nx.path_graph(n))
    assert slem(topo.numpy_matrices()[0]) == pytest.approx(np.cos(np.pi / n), abs=1e-4)


@pytest.mark.parametrize("n", [*SIZES, 15])
def test_the_ring_reaches_its_known_optimum(n):
    """By symmetry the optimum is uniform, w on every edge: SLEM = min_w max_k |1 - 2w(1 -
    cos(2 pi k / n))|, balanced between the second and the smallest eigenvalue."""
    c = np.cos(2 * np.pi / n)
    low = 1 + np.cos(np.pi / n) if n % 2 else 2.0  # 1 - cos of the most negative mode
    w = 1 / ((1 - c) + low)
    optimum = 1 - 2 * w * (1 - c)
    topo = fastest_mixing(decjax.ring(n))
    assert slem(topo.numpy_matrices()[0]) == pytest.approx(optimum, abs=1e-4)
    assert slem(decjax.ring(n).numpy_matrices()[0]) > optimum + 1e-3  # MH (1/3) is worse


@pytest.mark.slow
@pytest.mark.parametrize("n", [10, 16])  # a non-power of two, and a power of two
def test_never_worse_than_metropolis_hastings_on_any_catalogue_graph(n):
    for topo in all_topologies(n):
        if topo.period != 1 or topo.name in ("complete", "solo"):
            continue
        size, edges = graph_edges(topo)
        metropolis = decjax.topology.from_edges(size, edges)
        optimal = fastest_mixing(topo)
        w = optimal.numpy_matrices()[0]
        assert slem(w) <= slem(metropolis.numpy_matrices()[0]) + 1e-9, topo.name
        np.testing.assert_allclose(w, w.T, atol=1e-12)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9)
        assert np.all(w >= 0) and np.all((w != 0) <= (metropolis.numpy_matrices()[0] != 0))


def test_bad_graphs_are_refused():
    with pytest.raises(TypeError, match="undirected networkx Graph"):
        fastest_mixing(nx.DiGraph([(0, 1)]))
    with pytest.raises(ValueError, match="one static graph"):
        fastest_mixing(decjax.one_peer_exponential(8))
    with pytest.raises(ValueError, match="at least one edge"):
        fastest_mixing(nx.empty_graph(3))
