"""The push-sum family (SGP, OSGP, Push-DIGing) against message-level numpy loops."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from helpers import step_loop

import decjax
from decjax.topology import from_digraph, one_peer_directed_exponential

N, D = 8, 3


def random_digraph(n: int, seed: int) -> nx.DiGraph:
    """A strongly connected, irregular random digraph (a directed ring plus random arcs)."""
    graph = nx.gnp_random_graph(n, 0.3, seed=seed, directed=True)
    graph.add_edges_from((i, (i + 1) % n) for i in range(n))
    return graph


def out_shares(graph: nx.DiGraph):
    """Per sender ``j``: its share ``1 / (d_j^out + 1)`` and its out-neighbours."""
    nodes = list(graph.nodes)
    outs = {j: sorted(v for v in graph.successors(j) if v != j) for j in nodes}
    return {j: 1.0 / (len(outs[j]) + 1) for j in nodes}, outs


def quad_grads(q, z):
    a, b = (np.asarray(v, np.float64) for v in q.data)
    return a[:, None] * (z - b)


def sgp_by_messages(graph, q, lr, steps, *, tracking=False):
    """Each worker computes at its de-biased z, keeps its share and pushes the rest to its
    out-neighbours, message by message (float64). ``tracking``: Push-DIGing."""
    share, outs = out_shares(graph)
    n = q.n
    x = np.zeros((n, q.b.shape[1]))
    w = np.ones(n)
    z = x / w[:, None]
    grads = quad_grads(q, z)
    y = grads.copy()
    for t in range(steps):
        if tracking and t > 0:
            new_grads = quad_grads(q, z)
            y_pushed = np.zeros_like(y)
            for j in range(n):
                y_pushed[j] += share[j] * y[j]
                for i in outs[j]:
                    y_pushed[i] += share[j] * y[j]
            y = y_pushed + new_grads - grads
            grads = new_grads
        direction = y if tracking else quad_grads(q, z)
        half = x - lr * direction
        x_new, w_new = np.zeros_like(x), np.zeros(n)
        for j in range(n):
            x_new[j] += share[j] * half[j]
            w_new[j] += share[j] * w[j]
            for i in outs[j]:  # the message j -> i
                x_new[i] += share[j] * half[j]
                w_new[i] += share[j] * w[j]
        x, w = x_new, w_new
        z = x / w[:, None]
    return z


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def run(tx, q, steps, dtype=jnp.float64):
    params = q.init_params().astype(dtype)
    a, b = (v.astype(dtype) for v in q.data)

    def grads(p, t):
        del t
        return a[:, None] * (p - b)

    z, state, record = step_loop(tx, params, grads, steps)
    return np.asarray(z), state, record


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_sgp_equals_a_message_level_loop(x64, backend):
    graph = random_digraph(N, seed=1)
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    topology = from_digraph(graph)
    assert topology.push
    z, state, _ = run(decjax.sgp(0.05, topology, backend=backend), q, 50)
    reference = sgp_by_messages(graph, q, 0.05, 50)
    np.testing.assert_allclose(z, reference, rtol=1e-12, atol=1e-12)
    numerators, weights = state[1].numerators, state[1].weights
    assert abs(float(weights.sum()) - N) < 1e-12  # mass is conserved
    np.testing.assert_allclose(np.asarray(numerators) / np.asarray(weights)[:, None], z)


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_push_diging_equals_a_message_level_loop(x64, backend):
    graph = random_digraph(N, seed=2)
    q = decjax.problems.quadratics(N, D, key=jax.random.key(1))
    topology = from_digraph(graph)
    z, _, _ = run(decjax.push_diging(0.05, topology, backend=backend), q, 50)
    reference = sgp_by_messages(graph, q, 0.05, 50, tracking=True)
    np.testing.assert_allclose(z, reference, rtol=1e-11, atol=1e-12)


def test_push_diging_is_exact_where_sgp_keeps_a_bias():
    """Float32, heterogeneous quadratics, an irregular digraph: x* to 1e-5 vs an O(lr) bias."""
    q = decjax.problems.quadratics(N, D, key=jax.random.key(3))
    topology = from_digraph(random_digraph(N, seed=3))
    optimum = np.asarray(q.optimum)
    z, _, _ = run(decjax.push_diging(0.05, topology), q, 3000, jnp.float32)
    exact = np.max(np.abs(z - optimum))
    biased = {}
    for lr in (0.02, 0.04):
        zs, _, _ = run(decjax.sgp(lr, topology), q, 3000, jnp.float32)
        biased[lr] = np.max(np.abs(zs - optimum))
    assert exact < 1e-5, exact
    assert biased[0.02] > 1e-3  # SGP's bias, and it grows with the step size
    assert 1.5 < biased[0.04] / biased[0.02] < 2.5, biased


@pytest.mark.parametrize(
    "topology",
    [one_peer_directed_exponential(12), from_digraph(random_digraph(12, seed=4))],
    ids=["one_peer_directed_exp", "random_digraph"],
)
def test_push_sum_reaches_the_exact_average(x64, topology):
    x = jax.random.normal(jax.random.key(0), (12, 5), jnp.float64)
    z = decjax.gossip.push_sum_average(topology, x, 400)
    np.testing.assert_allclose(z, np.broadcast_to(x.mean(0), x.shape), atol=1e-10, rtol=0)
    if topology.push:  # plain gossip goes to a weighted average instead
        biased = decjax.mix(topology, x, rounds=400)
        assert np.max(np.abs(np.asarray(biased) - np.asarray(x.mean(0)))) > 1e-2


def test_sgp_equals_dpsgd_on_a_doubly_stochastic_matrix():
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    for topology in (decjax.ring(N), decjax.erdos_renyi(N, 0.4, key=jax.random.key(1))):
        z_sgp, _, _ = run(decjax.sgp(0.05, topology, momentum=0.9), q, 100, jnp.float32)
        z_dpsgd, _, _ = run(decjax.dpsgd(0.05, topology, momentum=0.9), q, 100, jnp.float32)
        np.testing.assert_allclose(z_sgp, z_dpsgd, rtol=1e-5, atol=1e-6)


def test_osgp_without_overlap_is_sgp(x64):
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    topology = from_digraph(random_digraph(N, seed=5))
    z_sgp, _, rec_sgp = run(decjax.sgp(0.05, topology), q, 40)
    z_osgp, _, rec_osgp = run(decjax.osgp(0.05, topology, overlap=0), q, 40)
    np.testing.assert_allclose(z_osgp, z_sgp, rtol=1e-12, atol=1e-12)
    assert float(rec_osgp["bytes_sent"]) == pytest.approx(float(rec_sgp["bytes_sent"]))


@pytest.mark.slow
def test_osgp_with_overlap_conserves_mass_and_converges(x64):
    """Shares in flight are missing from numerators and weights alike: the sum over workers
    plus what is in flight stays n, and z still reaches the exact average."""
    topology = from_digraph(random_digraph(N, seed=6))
    x = jax.random.normal(jax.random.key(0), (N, 2), jnp.float64)
    tx = decjax.osgp(0.1, topology, delays=decjax.algorithms.uniform_delay(3), key=1)
    z, state, _ = step_loop(tx, x, lambda p, t: jnp.zeros_like(p), 600)
    np.testing.assert_allclose(z, np.broadcast_to(x.mean(0), x.shape), atol=1e-9)
    assert float(state[1].weights.sum()) <= N + 1e-12


def test_averaging_algorithms_refuse_a_push_topology():
    topology = from_digraph(random_digraph(N, seed=1))
    for build in (decjax.dpsgd, decjax.gradient_tracking, decjax.detag):
        with pytest.raises(ValueError, match="column- but not row-stochastic"):
            build(0.1, topology)


@pytest.mark.slow
def test_a_sweep_over_push_topologies_and_rates_is_one_compile_and_matches_single_runs():
    topologies = [from_digraph(random_digraph(N, seed=s)) for s in (1, 2)]
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    common = {"steps": 20, "key": jax.random.key(0), "progress": False}
    swept = decjax.sweep(
        q.loss,
        q.init_params(),
        lambda learning_rate, topology: decjax.sgp(learning_rate, topology),
        q.data,
        {"learning_rate": [0.05, 0.1], "topology": topologies},
        **common,
    )
    assert swept.traces == 1
    single = decjax.simulate(
        q.loss, q.init_params(), decjax.sgp(0.1, topologies[1]), q.data, **common
    )
    np.testing.assert_allclose(np.asarray(swept.params)[-1], single.params, rtol=1e-6, atol=1e-7)
