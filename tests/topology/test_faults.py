"""Link failures and node outages: realized matrices, rates, replay, gossip on them."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.topology import fault_statistics, realized_matrices, with_faults

N, D = 8, 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "base",
    [
        decjax.ring(N),
        decjax.torus(2, 4),
        decjax.star(N),
        decjax.complete(N),
        decjax.hypercube(N),
        decjax.random_matching(N, key=0),
    ],
    ids=lambda t: t.name,
)
def test_without_failures_the_base_weights_are_reproduced(base):
    faulty = with_faults(base, key=jax.random.key(0))
    np.testing.assert_allclose(
        realized_matrices(faulty, range(base.period)), base.numpy_matrices(), atol=1e-6
    )


def test_self_reweighting_reproduces_any_symmetric_matrix():
    w = np.full((4, 4), 0.1) + np.diag([0.6] * 4)
    base = decjax.from_matrix(w)
    faulty = with_faults(base, key=jax.random.key(0), reweight="self")
    np.testing.assert_allclose(realized_matrices(faulty, [0])[0], w, atol=1e-6)


@pytest.mark.parametrize("reweight", ["metropolis", "self"])
def test_realized_matrices_stay_symmetric_doubly_stochastic(reweight):
    faulty = with_faults(
        decjax.torus(3, 3),
        key=jax.random.key(1),
        link_failure=0.4,
        node_failure=0.2,
        reweight=reweight,
    )
    mats = realized_matrices(faulty, range(30))
    np.testing.assert_allclose(mats, np.transpose(mats, (0, 2, 1)), atol=1e-7)
    np.testing.assert_allclose(mats.sum(axis=2), 1.0, atol=1e-6)
    assert np.all(mats >= -1e-7)
    base = decjax.torus(3, 3).numpy_matrices()[0]
    assert np.all((mats > 0) <= (base > 0)[None])  # only existing edges survive


@pytest.mark.slow
def test_failure_rates_match_the_probabilities():
    stats = fault_statistics(
        with_faults(decjax.ring(32), key=jax.random.key(2), link_failure=0.3), range(300)
    )
    assert stats["fraction_links_lost"] == pytest.approx(0.3, abs=0.03)
    assert stats["fraction_nodes_down"] == 0.0
    nodes = fault_statistics(
        with_faults(decjax.ring(32), key=jax.random.key(2), node_failure=0.2), range(300)
    )
    assert nodes["fraction_nodes_down"] == pytest.approx(0.2, abs=0.03)


@pytest.mark.slow
def test_effective_spectral_gap_shrinks_as_links_fail():
    gaps = [
        fault_statistics(
            with_faults(decjax.ring(16), key=jax.random.key(0), link_failure=p), range(200)
        )["effective_spectral_gap"]
        for p in (0.0, 0.3, 0.6)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    # no failures: 1 - sqrt(lambda_2(W^T W)) = 1 - |lambda_2(W)| for a symmetric W
    assert gaps[0] == pytest.approx(decjax.spectral_gap(decjax.ring(16)), rel=1e-4)


def test_down_nodes_are_isolated_for_whole_blocks():
    faulty = with_faults(decjax.ring(N), key=jax.random.key(3), node_failure=0.3, down_steps=4)
    alive = np.stack([np.asarray(decjax.topology.faults.node_alive(faulty, t)) for t in range(16)])
    assert np.all(alive[0:4] == alive[0]) and np.all(alive[4:8] == alive[4])
    assert (~alive).any()
    for t in range(16):
        m = np.asarray(faulty.matrix(t))
        for i in np.flatnonzero(~alive[t]):
            np.testing.assert_allclose(m[i], np.eye(N)[i], atol=1e-7)


def test_link_failure_schedule_is_cycled():
    faulty = with_faults(decjax.ring(N), key=jax.random.key(0), link_failure=[0.0, 1.0])
    mats = realized_matrices(faulty, range(4))
    np.testing.assert_allclose(mats[0], decjax.ring(N).numpy_matrices()[0], atol=1e-6)
    np.testing.assert_allclose(mats[1], np.eye(N), atol=1e-7)
    np.testing.assert_allclose(mats[2], mats[0], atol=1e-7)


def test_gossip_on_a_faulty_topology_is_the_realized_matrix_without_recompiling():
    faulty = with_faults(decjax.torus(2, 4), key=jax.random.key(4), link_failure=0.5)
    x = jax.random.normal(jax.random.key(0), (N, D))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def gossip(x, t):
        return decjax.mix(faulty, x, t), decjax.gossip.messages_per_worker(faulty, t)

    for t in range(6):
        y, messages = gossip(x, jnp.int32(t))
        m = np.asarray(faulty.matrix(t))
        np.testing.assert_allclose(y, m @ np.asarray(x), atol=1e-6)
        np.testing.assert_allclose(y.mean(0), x.mean(0), atol=1e-6)
        assert float(messages) == pytest.approx(((m > 0) & ~np.eye(N, dtype=bool)).sum() / N)


def test_same_key_same_failures_and_lazy_scaling():
    a = with_faults(decjax.ring(N), key=jax.random.key(9), link_failure=0.5)
    b = with_faults(decjax.ring(N), key=jax.random.key(9), link_failure=0.5)
    np.testing.assert_array_equal(realized_matrices(a, range(5)), realized_matrices(b, range(5)))
    lazy = decjax.topology.lazy(a, 0.5)
    np.testing.assert_allclose(
        realized_matrices(lazy, range(5)),
        0.5 * realized_matrices(a, range(5)) + 0.5 * np.eye(N),
        atol=1e-6,
    )


def test_faulty_is_a_wrapper_kind_whose_analysis_reads_its_base():
    base = decjax.torus(2, 4)
    faulty = with_faults(base, key=jax.random.key(5), link_failure=0.4, node_failure=0.1)
    assert type(faulty) is decjax.topology.Faulty and faulty.n == base.n
    assert "faulty" not in decjax.topology.representations()  # a wrapper, not a storage
    assert faulty.representation == "sparse" and faulty.base.representation == "sparse"
    # analysis: the graph without failures, as everywhere
    np.testing.assert_array_equal(faulty.matrices(), faulty.base.matrices())
    assert decjax.spectral_gap(faulty) == pytest.approx(decjax.spectral_gap(base), abs=1e-6)
    assert faulty.max_degree() == base.max_degree()
    # a pytree of the base's leaves and the model's: new weights reuse the program
    leaves = jax.tree.leaves(faulty)
    assert len(leaves) == len(jax.tree.leaves(faulty.base)) + len(jax.tree.leaves(faulty.model))
    # each step: the base's kind over the surviving links, period 1
    step = faulty.realized(3)
    assert type(step) is type(faulty.base) and step.period == 1
    np.testing.assert_allclose(
        decjax.mix(step, np.eye(N, dtype=np.float32), 0), faulty.matrix(3), atol=1e-6
    )
    alive = np.asarray(faulty.node_alive(3))
    assert np.all(np.asarray(base.node_alive(3)))
    m = np.asarray(faulty.matrix(3))
    assert np.all(m[~alive][:, alive] == 0)  # a down worker hears no one


def test_faulty_refuses_what_it_cannot_wrap_in_one_line():
    faulty = with_faults(decjax.ring(N), key=jax.random.key(5), link_failure=0.4)
    with pytest.raises(ValueError, match="ring\\+faults already has faults"):
        with_faults(faulty, key=jax.random.key(6), link_failure=0.1)
    with pytest.raises(TypeError, match="wraps a sparse or dense topology, got a 'shift'"):
        decjax.topology.Faulty(base=decjax.ring(N), model=faulty.model, **faulty.common_fields())
    with pytest.raises(ValueError, match="cannot be stacked"):
        decjax.topology.stack([faulty, faulty])
