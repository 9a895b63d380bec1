"""The traffic record: every kind's edge list is its message pattern, in O(edges)."""

import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.gossip import Links
from decjax.timing import message_pattern

N = 8
KEY = jax.random.key(3)


def _topologies():
    faulty = decjax.topology.with_faults(decjax.ring(N), link_failure=0.3, key=KEY)
    return {
        "ring": decjax.ring(N),
        "exponential": decjax.exponential(N),
        "one_peer": decjax.one_peer_exponential(N),
        "complete": decjax.complete(N),
        "complete_all_to_all": decjax.complete(N, exchange="all_to_all"),
        "periodic_all_to_all": decjax.topology.periodic_average(N, 3, exchange="all_to_all"),
        "solo": decjax.solo(N),
        "periodic_average": decjax.topology.periodic_average(N, 3),
        "duplicate_offsets": decjax.topology.from_offsets(
            N, [[0, 1, 1 + N, 3]], [[0.3, 0.25, 0.25, 0.2]], check_connected=False
        ),
        "ring_2": decjax.ring(2),
        "erdos_renyi": decjax.topology.erdos_renyi(N, 0.4, key=KEY),
        "star": decjax.topology.star(N),
        "ring_as_sparse": decjax.ring(N).to("sparse"),
        "ring_as_dense": decjax.ring(N).to("dense"),
        "faulty_ring": faulty,
        "faulty_ring_as_dense": faulty.to("dense"),
        "directed_ring": decjax.topology.directed_ring(N),
        "epidemic": decjax.topology.epidemic(N, 2, key=KEY),
        "random_out": decjax.topology.random_out(N, 3, key=KEY),
        "equi_dyn": decjax.topology.equi_dyn(N, key=KEY),
        "ou_equi_dyn": decjax.topology.ou_equi_dyn(N, key=KEY),
    }


TOPOLOGIES = _topologies()


def _expected(topology, t):
    """The bytes per link of a 1-byte message at round ``t``: ``W_t``'s off-diagonal
    pattern, or, for an average done as a ring all-reduce, ``2 (n - 1) / n`` on each
    link ``j -> j + 1`` of the ring."""
    pattern = np.asarray(message_pattern(topology, t))
    if topology.exchange_of_average() != "allreduce":
        return pattern
    ring = np.roll(np.eye(topology.n), 1, axis=0)  # ring[j + 1, j] = 1
    return np.where(pattern.any(), 2.0 * (topology.n - 1) / topology.n * ring, 0.0)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_each_kind_lists_its_messages_once_and_only_those(name):
    """One term: the edges put ``b`` bytes on exactly the links of W_t; two terms at
    different rounds: a link in both carries both (one message), at every round."""
    topology = TOPOLOGIES[name]

    @jax.jit
    def at(t):
        one = Links.of(topology, t, 3.0)
        both = one.plus(Links.of(topology, t + 1, 5.0))
        return one.dense()[0], both.dense()[0], both.edges(0), both.total()

    for t in range(5):
        one, both, edges, total = jax.tree.map(np.asarray, at(t))
        now, then = _expected(topology, t), _expected(topology, t + 1)
        np.testing.assert_array_equal(one, 3.0 * now)
        np.testing.assert_array_equal(both, 3.0 * now + 5.0 * then)
        r, s, b = edges
        sending = b > 0
        links = set(zip(r[sending].tolist(), s[sending].tolist(), strict=True))
        assert len(links) == int(sending.sum()), "a link listed twice"
        assert not np.any(r[sending] == s[sending])
        np.testing.assert_allclose(total, both.sum(), rtol=1e-6)


def test_a_term_that_sends_nothing_adds_nothing():
    ring = decjax.ring(N)
    quiet = Links.silent(ring).plus(Links.of(ring, 0, 2.0)).plus(Links.of(ring, 0, 0.0))
    np.testing.assert_array_equal(np.asarray(quiet.dense()[0]), 2.0 * message_pattern(ring, 0))
    assert float(Links.of(ring, 0, 7.0).plus(Links.of(ring, 0, 1.0), when=False).total()) == (
        7.0 * 2 * N
    )


@pytest.mark.parametrize(
    ("topology", "edges"),
    [
        (decjax.ring(64), 3 * 64),  # offsets 0 (itself, 0 bytes), +1 and -1
        (decjax.exponential(64), 7 * 64),
        (decjax.topology.erdos_renyi(64, 0.1, key=KEY).to("sparse"), None),
        (decjax.topology.epidemic(64, 3, key=KEY), 3 * 64),
    ],
)
def test_the_edge_list_grows_with_the_edges_not_with_n_squared(topology, edges):
    length = Links.of(topology, 0, 1.0).edges(0).bytes.shape[0]
    if edges is None:  # padded neighbour lists: n times the largest degree (plus self)
        edges = 64 * topology.lists()[0].shape[-1]
    assert length == edges < 64 * 64


def test_gradient_tracking_on_a_time_varying_graph_sends_both_vectors_in_one_phase():
    """Params at round t and tracker at round t - 1 of the one-peer graph use different
    links: each carries one vector; on a static ring both share each link."""
    params = jnp.zeros((N, 4))
    for topology, per_link in ((decjax.one_peer_exponential(N), 16.0), (decjax.ring(N), 32.0)):
        tx = decjax.gradient_tracking(0.1, topology)
        state, step = tx.init(params), jax.jit(tx.step)
        for _ in range(3):
            _, state, info = step(params, state, params)
        dense = np.asarray(jax.jit(Links.dense)(info["traffic"].links))
        assert dense.shape == (1, N, N)
        assert set(np.unique(dense)) == {0.0, per_link}


def test_a_ring_of_a_million_workers_traces_and_runs_in_linear_memory():
    """D-PSGD on ring(2**20) (quadratics), with and without a clock: tracing allocates under
    64 MB on the host (measured 1 MB; the clock's first version built the (n, n) float64
    message matrix there: 8 TiB, a MemoryError from 65,536 workers on), and the compiled
    program's temporaries stay under 64 bytes per worker (measured 20 and 52 MB). The run
    with the clock then gives the closed-form time of two steps."""
    n = 2**20
    q = decjax.problems.quadratics(n, 2, key=KEY)
    clock = decjax.timing.TimeModel(decjax.timing.Network(1e-5, 1e9), compute=0.01)
    for timing in (None, clock):
        tracemalloc.start()
        run = decjax.make_run(
            q.loss, decjax.dpsgd(0.1, decjax.ring(n)), steps=2, eval_every=2, timing=timing
        )
        lowered = jax.jit(lambda p, d, run=run: run(p, KEY, d)).lower(q.init_params(), q.data)
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert traced < 64 * 2**20, f"tracing allocated {traced / 2**20:.0f} MB"
        compiled = lowered.compile()
        assert compiled.memory_analysis().temp_size_in_bytes < 64 * n
    _, metrics = compiled(q.init_params(), q.data)
    assert float(metrics["bytes_sent"][-1]) == 2 * 2 * 2 * 4  # 2 steps, 2 neighbours, 8 B
    np.testing.assert_allclose(metrics["time"][-1], 2 * (0.01 + 1e-5 + 8 / 1e9), rtol=1e-6)


def test_a_stack_with_the_complete_graph_lists_each_members_messages():
    """In a sweep, each member of a stack of lists and averaging reports its own messages:
    the ring its 2 n, the complete graph its ring all-reduce, solo none, per step."""
    members = [decjax.ring(N), decjax.complete(N), decjax.solo(N), decjax.exponential(N)]
    stacked = decjax.topology.stack(members)

    @jax.jit
    def per_member(t):
        return jax.vmap(lambda topology: Links.of(topology, t, 2.0).dense()[0])(stacked)

    for t in range(3):
        got = np.asarray(per_member(t))
        for i, member in enumerate(members):
            np.testing.assert_allclose(got[i], 2.0 * _expected(member, t), rtol=1e-6)
    counts = jax.vmap(lambda topology: topology.messages_per_worker(0))(stacked)
    np.testing.assert_array_equal(np.asarray(counts), [2.0, N - 1.0, 0.0, 3.0])
    copies = jax.vmap(lambda topology: topology.copies_sent(0))(stacked)
    np.testing.assert_allclose(np.asarray(copies), [2.0, 2 * (N - 1) / N, 0.0, 3.0], rtol=1e-6)


def test_a_stack_keeps_how_its_averages_travel_or_refuses_two_ways():
    sends = decjax.topology.stack([decjax.ring(N), decjax.complete(N, exchange="all_to_all")])
    assert sends.exchange_of_average() == "all_to_all"
    assert decjax.topology.stack([decjax.ring(N), decjax.complete(N)]).exchange == "allreduce"
    with pytest.raises(ValueError, match="cannot be stacked: the clock could time only one"):
        decjax.topology.stack([decjax.complete(N), decjax.complete(N, exchange="all_to_all")])
    dense = decjax.topology.from_matrix(np.full((N, N), 1.0 / N))
    with pytest.raises(ValueError, match="exchange='all_to_all', or sweep the dense"):
        decjax.topology.stack([dense, decjax.complete(N)])
    assert decjax.topology.stack([dense, decjax.complete(N, exchange="all_to_all")]).n == N
