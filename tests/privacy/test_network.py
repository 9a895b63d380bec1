"""Network DP (Muffliato's pairwise accountant), zero-sum noise (DECOR), secure aggregation
masks and the reconstruction audit, each against an independent computation or a case
checked by hand."""

import itertools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax import privacy
from decjax.distributed import worker_mesh


def _muffliato_by_loops(w, steps, sigma, alpha):
    """Theorem 1 of Muffliato, one term at a time: the local value times the sum over rounds
    t < T and neighbours w of v of (W^t)_{wu}^2 / ||W^t e_u||^2, capped at the local value."""
    n = w.shape[0]
    local = alpha / (2 * sigma**2)
    out = np.full((n, n), np.nan)
    for u, v in itertools.permutations(range(n), 2):
        total = 0.0
        for t in range(steps):
            p = np.linalg.matrix_power(w, t)
            norm = sum(p[x, u] ** 2 for x in range(n))
            total += sum(p[x, u] ** 2 / norm for x in range(n) if x != v and w[v, x] != 0)
        out[u, v] = min(local * total, local)
    return out


@pytest.mark.parametrize("topology", [decjax.ring(16), decjax.hypercube(16)], ids=lambda t: t.name)
def test_the_pairwise_accountant_is_muffliatos_formula_and_falls_with_distance(topology):
    got = privacy.pairwise_epsilon(topology, 3, sigma=2.0, alpha=2.0)
    want = _muffliato_by_loops(np.asarray(topology.numpy_matrices()[0]), 3, 2.0, 2.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    means = privacy.by_distance(got, topology)
    assert means[1] == pytest.approx(2.0 / 8)  # a neighbour sees the noisy value itself
    values = list(means.values())
    assert all(a > b for a, b in itertools.pairwise(values) if a > 0)
    assert values[-1] < values[0] / 10


def test_on_the_complete_graph_every_pair_gets_the_central_value():
    got = privacy.pairwise_epsilon(decjax.complete(16), 10, sigma=0.7, alpha=3.0)
    off = got[~np.eye(16, dtype=bool)]
    np.testing.assert_allclose(off, 3.0 / (2 * 0.7**2))
    assert privacy.local_epsilon(0.7, 3.0) == pytest.approx(3.0 / (2 * 0.7**2))
    assert float(privacy.rdp_to_dp(1.0, 2.0, 1e-5)) == pytest.approx(1.0 + math.log(1e5))


def test_the_pairwise_accountant_refuses_what_its_bound_does_not_cover():
    with pytest.raises(ValueError, match="not symmetric"):
        privacy.pairwise_epsilon(decjax.exponential(16), 3, 1.0, 2.0)
    with pytest.raises(ValueError, match="at random"):
        privacy.pairwise_epsilon(decjax.topology.epidemic(16, 2, key=0), 3, 1.0, 2.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        privacy.pairwise_epsilon(decjax.ring(8), 3, 1.0, 1.0)


def test_decors_variance_for_the_papers_setting():
    assert privacy.decor_variance(10.0, 1e-5, 1000, 1.0) == pytest.approx(1290.03, abs=0.005)
    # and it is the Gaussian mechanism's RDP bound at its best order, found numerically
    sigma2 = privacy.decor_variance(2.0, 1e-6, 300, 0.5)
    orders = np.linspace(1.0001, 200, 2_000_001)
    eps = 300 * orders * (2 * 0.5) ** 2 / (2 * sigma2) + math.log(1e6) / (orders - 1)
    assert eps.min() == pytest.approx(2.0, rel=1e-6)


def test_zero_sum_noise_cancels_in_the_mean_with_the_pairs_covariance():
    pairs = privacy.ZeroSum.on(decjax.ring(8), 1.0)
    assert len(pairs.edges) == 8 and np.all(pairs.degrees() == 2)
    like = jnp.zeros((8, 20_000))
    noise = np.asarray(privacy.zero_sum_noise(pairs, like, jax.random.key(0), 0.5), np.float64)
    assert np.abs(noise.sum(0)).max() < 1e-5
    np.testing.assert_allclose(noise.var(1), 2 * 0.25, rtol=0.05)  # deg(i) s^2
    np.testing.assert_allclose(np.mean(noise[0] * noise[1]), -0.25, rtol=0.05)  # one pair
    assert abs(np.mean(noise[0] * noise[4])) < 0.02  # no pair


def test_zero_sum_noise_keeps_the_worker_mean_of_a_full_batch_run_and_shards():
    ds = decjax.data.load_digits()
    model = decjax.problems.mlp([64, 16, 10])
    n = 8
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    x = jnp.asarray(ds.x_train[: n * 20]).reshape(n, 20, -1)
    y = jnp.asarray(ds.y_train[: n * 20]).reshape(n, 20)

    def run(zero_sum, **kw):
        clip = privacy.Clip(1.0, zero_sum=zero_sum)
        tx = decjax.dpsgd(0.1, decjax.complete(n))  # mixing to the mean: the mean's path
        return decjax.simulate(
            model.loss,
            params,
            tx,
            (x, y),
            steps=30,
            key=jax.random.key(1),
            progress=False,
            eval_every=10,
            privacy=clip,
            **kw,
        )

    quiet = run(None)
    noisy = run(privacy.ZeroSum.on(decjax.ring(n), 5.0))
    first = jax.tree.leaves(noisy.params)[0]
    assert np.asarray(first).std(0).max() < 1e-5  # the complete graph keeps them in consensus
    np.testing.assert_allclose(first, jax.tree.leaves(quiet.params)[0], rtol=1e-3, atol=1e-4)
    sharded = run(privacy.ZeroSum.on(decjax.ring(n), 5.0), mesh=worker_mesh())
    np.testing.assert_allclose(jax.tree.leaves(sharded.params)[0], first, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="pairs 4 workers"):
        run(privacy.ZeroSum.on(decjax.ring(4), 1.0))


def test_secure_neighbour_sums_are_exact_in_fixed_point_and_messages_are_masked():
    values = np.random.default_rng(0).normal(size=(12, 5)) * 3
    topology = decjax.exponential(12)
    out = privacy.secure_neighbour_sums(values, topology, 7, fraction_bits=16)
    links = np.abs(topology.numpy_matrices()[0]) + np.abs(topology.numpy_matrices()[0].T) > 0
    np.fill_diagonal(links, False)
    words = privacy.encode(values).view(np.int32).astype(np.int64)
    exact = (links.T.astype(np.int64) @ words) / 2.0**16  # integer sums, then the scale
    np.testing.assert_array_equal(out.sums, exact)
    np.testing.assert_allclose(out.sums, links.T @ values, atol=12 * 2.0**-16)
    sent = out.messages[links]
    assert np.mean(sent != privacy.encode(values)[np.nonzero(links)[0]]) > 0.99
    degree = links.sum(0)
    assert out.message_bytes == links.sum() * 5 * 4
    assert out.seed_bytes == sum(d * (d - 1) for d in degree) * 16
    with pytest.raises(ValueError, match="overflow"):
        privacy.encode(np.array([1e6]), fraction_bits=16)


def test_the_audit_on_a_path_the_complete_graph_and_the_florentine_families():
    path = decjax.topology.from_networkx(nx.path_graph(3))
    assert list(privacy.reconstructed(path, [0], 1, "sums")) == [1]  # x_0' = a x_0 + b x_1
    complete = decjax.complete(6)
    assert list(privacy.reconstructed(complete, [0], 1, "sums")) == []
    k = privacy.knowledge_matrix(complete, [0], 1, "sums")
    np.testing.assert_allclose(k[1], np.full(6, 1 / 6))  # only the sum of the others
    assert list(privacy.reconstructed(complete, [0], 1)) == [1, 2, 3, 4, 5]  # plain messages
    graph = nx.florentine_families_graph()
    names = list(graph)
    florence = decjax.topology.from_networkx(nx.convert_node_labels_to_integers(graph))
    pazzi = names.index("Pazzi")  # a leaf: its one neighbour is Salviati
    seen = [{names[i] for i in privacy.reconstructed(florence, [pazzi], t)} for t in (1, 2)]
    assert seen == [{"Salviati"}, {"Salviati", "Medici"}]  # Salviati's other neighbour
    everyone = privacy.reconstructed(florence, [names.index("Medici")], 20)
    assert len(everyone) == 14  # the hub recovers every family in time


def test_accelerated_gossip_uses_the_polynomials_accelerated_mix_applies():
    """With momentum the messages are p_t(W) x: the accountant's matrices are those
    accelerated_mix computes (applied to the identity), and dpsgd's rounds apply them."""
    ring = decjax.ring(16)
    eta = 0.4
    got = privacy.pairwise_epsilon(ring, 4, sigma=2.0, alpha=2.0, momentum=eta)
    w = np.asarray(ring.numpy_matrices()[0])
    local = 2.0 / (2 * 2.0**2)
    total = np.zeros((16, 16))
    for t in range(4):
        if t == 0:
            p = np.eye(16)
        else:
            p = np.asarray(
                decjax.gossip.accelerated_mix(ring, jnp.eye(16), rounds=t, momentum=eta),
                np.float64,
            )
        for u, v in itertools.permutations(range(16), 2):
            norm = np.sum(p[:, u] ** 2)
            total[u, v] += sum(p[x, u] ** 2 / norm for x in range(16) if x != v and w[v, x])
    want = np.minimum(local * total, local)
    np.fill_diagonal(want, np.nan)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, privacy.pairwise_epsilon(ring, 4, sigma=2.0, alpha=2.0))
    x = jnp.arange(16.0)[:, None]
    tx = decjax.dpsgd(0.1, ring, rounds=4, gossip_momentum=eta)
    updates, _ = tx.update(jnp.zeros_like(x), tx.init(x), x)
    np.testing.assert_allclose(
        x + updates, decjax.gossip.accelerated_mix(ring, x, rounds=4, momentum=eta), rtol=1e-6
    )
    with pytest.raises(ValueError, match="drop gossip_momentum"):
        byz = decjax.byzantine
        decjax.dpsgd(
            0.1,
            ring,
            gossip_momentum=0.3,
            robust=byz.Robust(byz.Median(), byz.Byzantine((0,), byz.Echo())),
        )
