"""Directed, finite-time (Base-(k+1)), EquiTopo and random (epidemic, s-out, EquiDyn) topologies."""

import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax import topology as T


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# -- Base-(k+1) -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sizes", "peers"),
    [(range(2, 33), range(1, 3)), pytest.param(range(2, 65), range(1, 5), marks=pytest.mark.slow)],
    ids=["n<=32,k<=2", "n<=64,k<=4"],
)
def test_base_graph_averages_exactly_for_every_n_and_k(x64, sizes, peers):
    """One period's product is 11^T/n to 1e-12, with at most k peers per step, all n <= 64."""
    for k in peers:
        for n in sizes:
            topo = T.base_graph(n, k)
            assert topo.weights.dtype == jnp.float64
            error = np.max(np.abs(T.period_product(topo) - 1.0 / n))
            assert error < 1e-12, (n, k, error)
            assert topo.max_degree() <= k, (n, k)
            mats = topo.numpy_matrices()
            assert np.all(mats >= -1e-15)
            np.testing.assert_allclose(mats, np.swapaxes(mats, 1, 2), atol=1e-15)  # symmetric
            assert T.spectral_gap(topo) == pytest.approx(1.0)


def test_base_graph_is_never_longer_than_needed_for_powers_of_k_plus_one():
    assert T.base_graph(16, 1).period == 4  # the one-peer hypercube
    assert T.base_graph(27, 2).period == 3
    assert T.base_graph(1, 3).period == 1


def test_base_graph_beats_the_one_peer_exponential_graph_when_n_is_not_a_power_of_two(x64):
    """n = 12: the one-peer exponential graph's period leaves an error; Base-2 none."""
    exp_error = np.abs(T.period_product(decjax.one_peer_exponential(12)) - 1 / 12).max()
    base_error = np.abs(T.period_product(T.base_graph(12, 1)) - 1 / 12).max()
    assert exp_error > 1e-2 and base_error < 1e-12


@pytest.mark.parametrize("bad", [{"n": 0}, {"k": 0}, {"k": 1.5}])
def test_base_graph_rejects_bad_input(bad):
    args = {"n": 8, "k": 1} | bad
    with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
        T.base_graph(**args)


# -- directed graphs ----------------------------------------------------------------
def test_from_digraph_is_column_stochastic_with_uniform_out_shares():
    graph = nx.DiGraph([(0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 2)])
    topo = T.from_digraph(graph)
    w = np.asarray(topo.matrix(), np.float64)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-7)
    assert topo.push and topo.column_stochastic and not topo.row_stochastic
    np.testing.assert_allclose(w[:, 0], [0.25] * 4, atol=1e-7)  # node 0 splits over 3 + itself
    np.testing.assert_allclose(w[[2, 3], 3], [0.5, 0.5], atol=1e-7)


def test_from_digraph_refuses_a_graph_that_is_not_strongly_connected():
    with pytest.raises(ValueError, match="connected"):
        T.from_digraph(nx.DiGraph([(0, 1), (1, 2)]))
    with pytest.raises(ValueError, match="weights must be one of"):
        T.from_digraph(nx.DiGraph([(0, 1), (1, 0)]), weights="metropolis")
    with pytest.raises(TypeError, match="networkx"):
        T.from_digraph([(0, 1)])


def test_push_gossip_conserves_the_sum_on_every_backend_and_matches_the_matrix(x64):
    graph = nx.gnp_random_graph(10, 0.3, seed=0, directed=True)
    graph.add_edges_from((i, (i + 1) % 10) for i in range(10))
    topo = T.from_digraph(graph)
    w = topo.numpy_matrices()[0]
    x = jax.random.normal(jax.random.key(0), (10, 4), jnp.float64)
    for backend in topo.backends:
        y = decjax.mix(topo, x, backend=backend)
        np.testing.assert_allclose(y, w @ np.asarray(x), atol=1e-14)
        np.testing.assert_allclose(y.sum(0), x.sum(0), atol=1e-13)
    assert topo.backends == ("sparse", "dense")


@pytest.mark.slow
def test_the_directed_catalogue_graphs_match_their_matrices_on_every_backend():
    from helpers import DIRECTED_NAMES, all_topologies, dense_reference

    x = jax.random.normal(jax.random.key(0), (8, 3))
    for topo in all_topologies(8, directed=True):
        if topo.name.startswith(("directed", "one_peer_directed")):
            mats = topo.numpy_matrices()
            np.testing.assert_allclose(mats.sum(axis=1), 1, atol=1e-6)
            np.testing.assert_allclose(mats.sum(axis=2), 1, atol=1e-6)
            for backend in topo.backends:
                for step in range(topo.period + 1):
                    y = decjax.mix(topo, x, step, backend=backend)
                    np.testing.assert_allclose(y, dense_reference(topo, x, step), atol=2e-6)
    assert len(DIRECTED_NAMES) == 3


def test_the_sgp_papers_directed_graphs():
    assert T.directed_exponential(8).offsets == ((0, 7, 6, 4),)
    ring = np.asarray(T.directed_ring(5).matrix())
    np.testing.assert_allclose(ring[1, 0], 0.5) and np.testing.assert_allclose(ring[0, 1], 0.0)
    one_peer = T.one_peer_directed_exponential(8)
    assert one_peer.period == 3 and one_peer.max_degree() == 1
    assert np.allclose(T.period_product(one_peer), 1 / 8, atol=1e-6)
    assert not T.spectrum.is_symmetric(T.directed_exponential(8))


def test_effective_neighbors_refuses_a_push_sum_graph():
    topo = T.from_digraph(nx.DiGraph([(0, 1), (1, 2), (2, 0), (0, 2)]))
    with pytest.raises(ValueError, match="not row-stochastic"):
        decjax.effective_neighbors(topo, 0.9)


# -- EquiTopo ------------------------------------------------------------------------
def test_equi_static_consensus_rate_does_not_grow_with_n():
    """||W - J|| over 5 seeds stays in one band from n = 16 to 4096 (M = ceil(2 ln n)),
    while the ring's tends to 1."""
    rates = {}
    for n in (16, 64, 256, 1024, 4096):
        rates[n] = np.mean([1 - T.spectral_gap(T.equi_static(n, key=s)) for s in range(5)])
    assert max(rates.values()) < 0.8 and max(rates.values()) - min(rates.values()) < 0.25, rates
    assert 1 - T.spectral_gap(decjax.ring(4096)) > 0.999
    undirected = T.equi_static(64, 6, key=0, undirected=True)
    assert T.spectrum.is_symmetric(undirected) and undirected.max_degree() <= 12


def test_equi_static_is_the_mean_of_its_basis_matrices():
    n, m = 12, 3
    topo = T.equi_static(n, m, key=3)
    offsets = decjax._random.numpy_rng(jax.random.key(3)).integers(1, n, size=m)
    basis = [np.eye(n) / n + (n - 1) / n * np.roll(np.eye(n), u, axis=1) for u in offsets]
    np.testing.assert_allclose(np.asarray(topo.matrix(), np.float64), np.mean(basis, 0), atol=1e-7)


def test_equi_dyn_contraction_is_independent_of_n_and_matches_the_realized_matrices():
    rates = [T.equi_dyn(n, key=0).contraction() for n in (8, 64, 1024, 2**16)]
    assert max(rates) - min(rates) < 0.07 and max(rates) <= 0.5, rates
    topo = T.equi_dyn(16, key=1)
    mats = T.realized_matrices(topo, range(4000))
    ww = np.einsum("tji,tjk->ik", mats, mats) / len(mats)
    centred = np.eye(16) - 1 / 16
    mc = np.linalg.eigvalsh(centred @ ww @ centred)
    assert mc[-1] == pytest.approx(topo.contraction(), abs=0.03)
    np.testing.assert_allclose(mats.sum(1), 1, atol=1e-6)  # doubly stochastic every step
    np.testing.assert_allclose(mats.sum(2), 1, atol=1e-6)
    assert int(((mats > 0).sum(2) - 1).max()) == 1  # one peer


# -- epidemic and random s-out -------------------------------------------------------
def test_epidemic_matrices_have_the_papers_structure_and_expectation():
    n, s = 12, 3
    topo = T.epidemic(n, s, key=0)
    mats = T.realized_matrices(topo, range(3000))
    np.testing.assert_allclose(mats.sum(axis=2), 1.0, atol=1e-6)  # receivers average
    off = (mats > 0) & ~np.eye(n, dtype=bool)
    assert np.all(off.sum(axis=1) == s)  # every sender reaches exactly s others
    in_degree = off.sum(axis=2)
    assert in_degree.mean() == pytest.approx(s, abs=1e-9)
    # E[W]: E[1/(1+D)] on the diagonal with D ~ Bin(n-1, s/(n-1)), the rest spread evenly
    p = s / (n - 1)
    exact_self = sum(
        math.comb(n - 1, d) * p**d * (1 - p) ** (n - 1 - d) / (1 + d) for d in range(n)
    )
    assert np.mean(1 / (1 + in_degree)) == pytest.approx(exact_self, abs=0.01)
    mean = mats.mean(axis=0)
    np.testing.assert_allclose(np.diag(mean), exact_self, atol=0.03)
    np.testing.assert_allclose(mean[~np.eye(n, dtype=bool)], (1 - exact_self) / (n - 1), atol=0.02)


def test_epidemic_contraction_is_the_papers_closed_form():
    for n, s in ((16, 1), (32, 3), (100, 7)):
        paper = (1 / s) * (1 - (1 - s / (n - 1)) ** n) - 1 / (n - 1)
        assert T.epidemic(n, s).contraction() == pytest.approx(paper, rel=1e-12)
        assert T.spectral_gap(T.epidemic(n, s)) == pytest.approx(1 - np.sqrt(paper))


def test_random_out_is_column_stochastic_with_s_out_links():
    topo = T.random_out(10, 2, key=0)
    assert topo.push
    mats = T.realized_matrices(topo, range(50))
    np.testing.assert_allclose(mats.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.where(mats > 0, mats, 1 / 3), 1 / 3, atol=1e-6)
    assert np.all((mats > 0).sum(axis=1) == 3)
    assert not np.allclose(mats[0], mats[1])  # a new graph every step


@pytest.mark.parametrize(
    "build", [T.epidemic, T.random_out, lambda n, s, key: T.equi_dyn(n, key=key)]
)
def test_random_gossip_is_the_realized_matrix_and_compiles_once(build):
    topo = build(16, 3, key=2)
    x = jax.random.normal(jax.random.key(0), (16, 2, 3))
    traces = []

    @jax.jit
    def mixed(x, t):
        traces.append(t)
        return decjax.mix(topo, x, t), topo.matrix(t)

    for t in range(5):
        y, w = mixed(x, t)
        np.testing.assert_allclose(y, jnp.einsum("ij,jab->iab", w, x), atol=1e-5)
    assert len(traces) == 1


def test_push_sum_on_random_out_graphs_reaches_the_exact_average(x64):
    topo = T.random_out(20, 1, key=0)
    x = jax.random.normal(jax.random.key(1), (20, 3), jnp.float64)
    z = decjax.gossip.push_sum_average(topo, x, 300)
    np.testing.assert_allclose(z, np.broadcast_to(x.mean(0), x.shape), atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: T.epidemic(16, 2, key=1), marks=pytest.mark.slow),
        pytest.param(lambda: T.equi_dyn(16, key=1), marks=pytest.mark.slow),
    ],
)
def test_effective_neighbors_of_a_random_graph_matches_its_random_walk(build):
    """Closed form over the law vs 4,000 simulated walks x <- W_t (sqrt(g) x + noise)."""
    topo, gamma = build(), 0.9

    def walk(key):
        def body(x, t):
            noise = jax.random.normal(jax.random.fold_in(key, t), (16,))
            return topo.matrix(t + 1000 * jax.random.randint(key, (), 0, 10**4)) @ (
                jnp.sqrt(gamma) * x + noise
            ), None

        x, _ = jax.lax.scan(body, jnp.zeros(16), jnp.arange(150))
        return jnp.mean(x**2)

    variance = float(jnp.mean(jax.jit(jax.vmap(walk))(jax.random.split(jax.random.key(3), 4000))))
    simulated = 1 / ((1 - gamma) * variance)
    assert decjax.effective_neighbors(topo, gamma) == pytest.approx(simulated, rel=0.02)


def test_random_topologies_explain_what_they_cannot_do():
    topo = T.epidemic(8, 2)
    with pytest.raises(ValueError, match="draws a new matrix at every step"):
        T.period_product(topo)
    with pytest.raises(ValueError, match="cannot be stacked"):
        T.stack([topo, topo])
    with pytest.raises(ValueError, match="already random"):
        T.with_faults(topo, key=0, link_failure=0.1)
    with pytest.raises(ValueError, match="backend='dense' does not apply"):
        decjax.mix(topo, jnp.ones((8, 1)), backend="dense")
    with pytest.raises(ValueError, match="needs n > s"):
        T.epidemic(4, 4)
    with pytest.raises(ValueError, match="eta"):
        T.equi_dyn(8, eta=0.0)
    lazy = T.lazy(topo, 0.5)
    assert float(lazy.weights) == 0.5 and lazy.representation == "random"


# -- OU-EquiDyn: the undirected one-peer EquiDyn --------------------------------------


def _matching_reference(n, shift, start):
    """Song et al.'s greedy matching, written from the paper's description."""
    partner = list(range(n))
    for t in range(n):
        i = (start + t) % n
        j = (i + shift) % n
        if partner[i] == i and partner[j] == j:
            partner[i], partner[j] = j, i
    return partner


def _ou_matrix(n, shift, start, eta):
    matched = np.zeros((n, n))
    for i, j in enumerate(_matching_reference(n, shift, start)):
        matched[i, j] = 1.0
    return (1 - eta) * np.eye(n) + eta * (np.eye(n) / n + (n - 1) / n * matched)


@pytest.mark.parametrize("n", [2, 5, 8])
def test_ou_equi_dyn_matches_every_offset_and_start_as_the_construction_says(n):
    from decjax.topology.kinds.random import match_pairs

    match = jax.jit(match_pairs, static_argnums=2)
    for shift in range(1, n):
        for start in range(n):
            got = np.asarray(match(jnp.int32(shift), jnp.int32(start), n))
            assert got.tolist() == _matching_reference(n, shift, start), (shift, start)


@pytest.mark.parametrize(("n", "eta"), [(6, 1.0), (7, 0.5), (8, 1.0)])
def test_ou_equi_dyn_contraction_is_the_exact_expectation_over_its_law(n, eta):
    """E[W^2] over all n - 1 offsets and n starts (uniform), eigenvalues against the
    closed form; the stationary variance (sampled) within 2 % of the exact series."""
    law = [_ou_matrix(n, u, s, eta) for u in range(1, n) for s in range(n)]
    second = sum(w @ w for w in law) / len(law)
    topology = decjax.topology.ou_equi_dyn(n, key=0, eta=eta)
    np.testing.assert_allclose(
        np.sort(topology._matching_spectrum()), np.linalg.eigvalsh(second), atol=1e-12
    )
    assert topology.contraction() == pytest.approx(np.linalg.eigvalsh(second)[-2], abs=1e-12)
    gamma, kron = 0.9, sum(np.kron(w, w) for w in law) / len(law)
    vec, exact = np.eye(n).ravel(), 0.0
    for t in range(600):
        vec = kron @ vec
        exact += gamma**t * np.trace(vec.reshape(n, n)) / n
    assert topology.stationary_variance(gamma) == pytest.approx(exact, rel=0.02)


def test_ou_equi_dyn_realizes_symmetric_doubly_stochastic_one_peer_matrices():
    topology = decjax.topology.ou_equi_dyn(16, key=3)
    for step in range(20):
        w = np.asarray(topology.matrix(step), np.float64)
        np.testing.assert_allclose(w, w.T, atol=1e-7)
        np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
        assert ((w > 0).sum(axis=1) <= 2).all()
    x = jnp.arange(16.0)
    mixed = decjax.mix(topology, x, 5)
    assert float(jnp.mean(mixed)) == pytest.approx(7.5, abs=1e-5)


@pytest.mark.parametrize("n", [4, 8, 16])
def test_equi_static_is_connected_for_every_key(n):
    """Keys whose default offsets did not generate Z_n (5 of 200 at n = 8, 6 at n = 4) are
    redrawn: every key 0..199 gives a connected graph (gap > 0), the same one twice."""
    for key in range(200):
        topology = T.equi_static(n, key=key)
        offsets = [o for o in topology.offsets[0] if o]
        assert math.gcd(n, *offsets) == 1, (n, key, offsets)
        assert T.spectral_gap(topology) > 0
    again = T.equi_static(8, key=7)
    assert again.offsets == T.equi_static(8, key=7).offsets


@pytest.mark.parametrize(
    ("n", "low", "high"), [(16, 0.55, 0.6), (64, 0.6, 0.65), (256, 0.62, 0.66)]
)
def test_equi_static_rate_is_what_its_docstring_says(n, low, high):
    """The docstring's medians of ||W - 11^T/n||_2 over keys 0..199 at the default M.

    W is circulant, so the norm is the largest |eigenvalue| off the mean: the FFT of its
    first row without frequency 0 (checked against the SVD norm for the first key)."""
    rates = []
    for key in range(200):
        w = T.equi_static(n, key=key).numpy_matrices()[0]
        rates.append(np.abs(np.fft.fft(w[0])[1:]).max())
        if key == 0:
            assert rates[0] == pytest.approx(np.linalg.norm(w - 1.0 / n, 2), abs=1e-12)
    assert low <= np.median(rates) <= high
