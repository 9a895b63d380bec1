"""RelaySum averaging: exact after the tree's diameter, counts, routing, traffic."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax.gossip import relay_average, relay_init, relay_round, relay_routes
from decjax.topology import binary_tree, chain, double_binary_trees, spanning_tree

TREES = {
    "chain": lambda: chain(9),
    "binary_tree": lambda: binary_tree(13),
    "double_binary_trees": lambda: double_binary_trees(16),
    "bfs_of_a_torus": lambda: spanning_tree(decjax.torus(3, 5), root=7),
    "networkx": lambda: decjax.from_networkx(nx.random_labeled_tree(11, seed=5)),
}


# two kinds in the inner loop (one tree, coordinates split over two), all in the slow tier
INNER = ("chain", "double_binary_trees")


@pytest.mark.parametrize(
    "name", [n if n in INNER else pytest.param(n, marks=pytest.mark.slow) for n in TREES]
)
def test_the_exact_average_after_diameter_rounds_and_not_before(name):
    """float64: every worker holds the average to 1e-12 after ``diameter`` rounds, with
    count n; one round fewer, some worker still misses a term."""
    tree = TREES[name]()
    routes = relay_routes(tree)
    with jax.enable_x64(True):
        x = {
            "w": jax.random.normal(jax.random.key(1), (tree.n, 3, 2), jnp.float64),
            "b": jnp.arange(tree.n, dtype=jnp.float64)[:, None] / 7.0,
        }
        averages, counts = relay_average(tree, x)
        for got, leaf in zip(jax.tree.leaves(averages), jax.tree.leaves(x), strict=True):
            assert float(jnp.max(jnp.abs(got - leaf.mean(0, keepdims=True)))) < 1e-12
        assert {float(c) for c in np.ravel(jax.tree.leaves(counts)[0])} == {float(tree.n)}
        _, early = relay_average(tree, x, routes.diameter - 1)
        assert float(jnp.min(jax.tree.leaves(early)[0])) < tree.n


def test_counts_are_the_workers_within_reach():
    """After round t (from 0) worker i has heard from every worker within t + 1 hops."""
    tree = binary_tree(12)
    routes = relay_routes(tree)
    (edges,) = decjax.topology.tree_edges(tree)
    g = nx.Graph(edges)
    hops = dict(nx.all_pairs_shortest_path_length(g))
    x = jnp.ones((12, 1))
    state = relay_init(routes, x)
    for t in range(routes.diameter):
        _, counts, state = relay_round(routes, x, state)
        expected = [sum(1 for j in range(12) if hops[i][j] <= t + 1) for i in range(12)]
        assert np.ravel(counts).tolist() == expected


def _reference_relay(edges, n, values, rounds):
    """The authors' message dictionaries (paper-figures/algorithms.py), one tree, fixed values."""
    neighbours = {i: [j for e in edges for j in e if i in e and j != i] for i in range(n)}
    messages = {}
    for _ in range(rounds):
        messages = {
            (i, j): values[i] + sum(messages.get((k, i), 0.0) for k in neighbours[i] if k != j)
            for i in range(n)
            for j in neighbours[i]
        }
    return np.stack([values[i] + sum(messages[(k, i)] for k in neighbours[i]) for i in range(n)])


def test_sums_match_the_authors_message_dictionaries_every_round():
    tree = spanning_tree(decjax.topology.erdos_renyi(10, 0.4, key=3), root=2)
    (edges,) = decjax.topology.tree_edges(tree)
    values = np.random.default_rng(0).normal(size=(10, 4)) / 3.0
    routes = relay_routes(tree)
    state = relay_init(routes, jnp.asarray(values, jnp.float32))
    for t in range(routes.diameter + 3):
        totals, _, state = relay_round(routes, jnp.asarray(values, jnp.float32), state)
        np.testing.assert_allclose(totals, _reference_relay(edges, 10, values, t + 1), rtol=2e-6)


def test_relaying_on_a_ring_is_refused():
    with pytest.raises(ValueError, match="spanning tree"):
        relay_average(decjax.ring(8), jnp.zeros((8, 2)))
