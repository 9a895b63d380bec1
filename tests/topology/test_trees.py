"""Spanning trees: their edges, diameters and the one-line refusal of other graphs."""

import networkx as nx
import numpy as np
import pytest

import decjax
from decjax.topology import binary_tree, chain, double_binary_trees, spanning_tree, tree_edges


def _nx(edges, n):
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    return g


@pytest.mark.parametrize("n", [2, 3, 7, 16, 33])
def test_every_tree_is_a_spanning_tree_with_the_expected_diameter(n):
    for topology, diameter in [
        (chain(n), n - 1),
        (binary_tree(n), None),
        (spanning_tree(decjax.ring(n)), n // 2 + (n - 1) // 2 if n > 2 else n - 1),
    ]:
        (edges,) = tree_edges(topology)
        g = _nx(edges, n)
        assert nx.is_tree(g)
        if diameter is not None:
            assert nx.diameter(g) == diameter
        # doubly stochastic Metropolis weights: gossip algorithms run on a tree too
        w = topology.numpy_matrices()[0]
        np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-6)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)


def test_the_binary_tree_is_the_authors_numbering():
    """relaysgd's topologies.py: worker w >= 1 has children 2w, 2w + 1; 0 hangs from 1."""
    (edges,) = tree_edges(binary_tree(16))
    expected = {(0, 1)} | {(w // 2, w) for w in range(2, 16)}
    assert set(edges) == expected
    (mirrored,) = tree_edges(binary_tree(16, mirrored=True))
    assert set(mirrored) == {tuple(sorted((15 - i, 15 - j))) for i, j in expected}


def test_double_binary_trees_have_complementary_inner_workers():
    """With n a power of two, the workers inner in one tree are leaves (or the pendant)
    in the other: each relays as an inner node on at most one tree."""
    first, second = tree_edges(double_binary_trees(16))
    degree = [np.bincount(np.ravel(e), minlength=16) for e in (first, second)]
    assert not np.any((degree[0] > 1) & (degree[1] > 1))
    assert double_binary_trees(16).period == 2


def test_spanning_tree_keeps_every_distance_to_the_root():
    graph = nx.davis_southern_women_graph()
    tree = spanning_tree(graph, root=3)
    g = nx.convert_node_labels_to_integers(graph)
    (edges,) = tree_edges(tree)
    t = _nx(edges, g.number_of_nodes())
    assert nx.is_tree(t)
    assert nx.shortest_path_length(t, 3) == nx.shortest_path_length(g, 3)


def test_any_networkx_tree_works():
    tree = nx.random_labeled_tree(20, seed=3)
    (edges,) = tree_edges(decjax.from_networkx(tree))
    assert set(edges) == {tuple(sorted(e)) for e in tree.edges}


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: tree_edges(decjax.ring(6)), "spanning tree"),
        (lambda: tree_edges(decjax.topology.erdos_renyi(8, 0.9, key=0)), "spanning tree"),
        (lambda: tree_edges(decjax.topology.directed_ring(4)), "directed"),
        (lambda: tree_edges(decjax.topology.epidemic(8, 2, key=0)), "fixed graphs"),
        (lambda: spanning_tree(_nx([(0, 1)], 3)), "connected"),
        (lambda: spanning_tree(decjax.ring(4), root=4), "root"),
        (lambda: spanning_tree("ring"), "graph"),
    ],
)
def test_other_graphs_are_refused_in_one_line(build, words):
    with pytest.raises((ValueError, TypeError), match=words) as err:
        build()
    assert "\n" not in str(err.value)
