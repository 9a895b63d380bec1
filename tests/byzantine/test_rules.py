"""Robust rules and attacks against references written from their papers, and the oracles."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax import byzantine as byz

N = 8


def _np_inputs(own, messages, valid):
    return np.concatenate([own[None], messages[valid]], axis=0)


def _np_median(own, messages, valid):
    return np.median(_np_inputs(own, messages, valid), axis=0)


def _np_trimmed_mean(own, messages, valid, b):
    values = np.sort(_np_inputs(own, messages, valid), axis=0)
    return values[b : values.shape[0] - b].mean(axis=0)


def _np_geometric_median(own, messages, valid, iterations, nu):
    v = _np_inputs(own, messages, valid)
    z = v.mean(axis=0)
    for _ in range(iterations):
        beta = 1.0 / np.maximum(np.linalg.norm(v - z, axis=1), nu)
        z = (beta[:, None] * v).sum(axis=0) / beta.sum()
    return z


def _np_krum(own, messages, valid, f):
    v = _np_inputs(own, messages, valid)
    c = v.shape[0]
    scores = []
    for i in range(c):
        d = sorted(float(np.sum((v[i] - v[j]) ** 2)) for j in range(c) if j != i)
        scores.append(sum(d[: c - f - 2]))
    return v[int(np.argmin(scores))]


def _np_clipping(own, messages, weights, valid, tau):
    out = own.copy()
    distances = np.linalg.norm(messages - own, axis=1)
    if tau is None:
        ordered = np.sort(distances[valid])
        tau = ordered[-2] if ordered.size >= 2 else ordered[-1]
    for k in range(messages.shape[0]):
        z = messages[k] - own
        scale = min(1.0, tau / distances[k]) if distances[k] > 0 else 1.0
        out += weights[k] * scale * z
    return out


def _np_ios(own, messages, weights, valid, f):
    """The authors' loop (Gaucher et al.'s aggregators/ios.py): weights with the own one."""
    inputs = np.concatenate([own[None], messages], axis=0)
    w = np.concatenate([[1 - weights[valid].sum()], np.where(valid, weights, 0.0)])
    trusted = w > 0
    for _ in range(f):
        average = (w[trusted, None] * inputs[trusted]).sum(axis=0) / w[trusted].sum()
        distances = np.linalg.norm(inputs - average, axis=1)
        farthest, index = 0.0, None
        for k, d in enumerate(distances):
            if k > 0 and trusted[k] and d > farthest:
                farthest, index = d, k
        if index is not None:
            trusted[index] = False
    return (w[trusted, None] * inputs[trusted]).sum(axis=0) / w[trusted].sum()


def _with_own_sorted(own, messages, weights, valid):
    """As Gaucher et al.'s code lists them: the worker itself first (its weight W_ii), its
    differences own - m_j, their norms, the order by distance and the cumulative weights."""
    inputs = np.concatenate([own[None], messages[valid]], axis=0)
    w = np.concatenate([[1 - weights[valid].sum()], weights[valid]])
    differences = own - inputs
    distances = np.linalg.norm(differences, axis=1)
    order = np.argsort(distances, kind="stable")
    return w, differences, distances, order, np.cumsum(w[order])


def _np_cs_plus(own, messages, weights, valid, b):
    """The authors' cs_plus (Gaucher et al.'s aggregators/robust_gossip.py), the own model
    first with its weight, Byzantine weight b times the largest neighbour weight."""
    w, differences, distances, order, cumulative = _with_own_sorted(own, messages, weights, valid)
    byzantine_weight = b * weights[valid].max()
    target = cumulative[-1] - 2 * byzantine_weight
    idx = int(np.searchsorted(cumulative, target))
    if byzantine_weight == 0 or idx >= len(w):
        tau = np.inf
    elif np.isclose(cumulative[idx], target, rtol=0, atol=1e-12):
        tau = distances[order][idx]
    else:
        tau = distances[order][idx - 1] if idx >= 1 else 0.0
    scale = np.where(distances > tau, tau / np.where(distances > 0, distances, 1), 1.0)
    return own - (w[:, None] * scale[:, None] * differences).sum(axis=0)


def _np_cs_he(own, messages, weights, valid, b):
    """Gaucher et al.'s cs_he (aggregators/robust_gossip.py): He et al.'s adaptive radius."""
    w, differences, distances, order, cumulative = _with_own_sorted(own, messages, weights, valid)
    byzantine_weight = b * weights[valid].max()
    # reaching the target within rounding counts (exact arithmetic's tie, e.g. the farthest
    # neighbour carrying the largest weight)
    idx = int(np.searchsorted(cumulative, cumulative[-1] - byzantine_weight - 1e-12))
    if idx == 0:
        tau = 0.0
    elif byzantine_weight == 0 or idx >= len(w):
        tau = np.inf
    else:
        tau = np.sqrt((w[order][:idx] * distances[order][:idx] ** 2).sum() / byzantine_weight)
    scale = np.where(distances > tau, tau / np.where(distances > 0, distances, 1), 1.0)
    return own - (w[:, None] * scale[:, None] * differences).sum(axis=0)


CASES = {
    "random": (np.arange(5) % 5 != 4),  # the last slot is padding
    "all valid": np.ones(5, bool),
}


def _vectors(kind):
    rng = np.random.default_rng(0)
    own = rng.normal(size=6)
    messages = rng.normal(size=(5, 6))
    if kind == "ties":
        messages[1] = messages[0]
        messages[2, :3] = own[:3]
    if kind == "all equal":
        messages[:] = own
    weights = np.array([0.15, 0.2, 1 / 7, 0.1, 0.0])
    return own, messages, weights


@pytest.mark.parametrize("kind", ["random", "ties", "all equal"])
@pytest.mark.parametrize("valid", list(CASES.values()), ids=list(CASES))
def test_each_rule_equals_a_numpy_implementation_of_its_paper(kind, valid):
    own, messages, weights = _vectors(kind)
    args = (*(jnp.asarray(a) for a in (own, messages, weights)), jnp.asarray(valid))
    with jax.enable_x64(True):
        args64 = tuple(jnp.asarray(a, jnp.float64) for a in (own, messages, weights))
        args64 += (jnp.asarray(valid),)
        check = {
            "median": (byz.Median(), _np_median(own, messages, valid)),
            "trimmed mean b=1": (byz.TrimmedMean(1), _np_trimmed_mean(own, messages, valid, 1)),
            "geometric median": (
                byz.GeometricMedian(iterations=20, nu=1e-8),
                _np_geometric_median(own, messages, valid, 20, 1e-8),
            ),
            "krum f=1": (byz.Krum(1), _np_krum(own, messages, valid, 1)),
            "clipping tau=0.5": (
                byz.Clipping(0.5),
                _np_clipping(own, messages, weights, valid, 0.5),
            ),
            "clipping adaptive": (
                byz.Clipping(),
                _np_clipping(own, messages, weights, valid, None),
            ),
            "ios f=1": (byz.IOS(1), _np_ios(own, messages, weights, valid, 1)),
            "ios f=2": (byz.IOS(2), _np_ios(own, messages, weights, valid, 2)),
            "cs+ b=1": (byz.CSPlus(1), _np_cs_plus(own, messages, weights, valid, 1)),
            "cs+ b=0": (byz.CSPlus(0), _np_cs_plus(own, messages, weights, valid, 0)),
            "paper clipping b=1": (
                byz.PaperClipping(1),
                _np_cs_he(own, messages, weights, valid, 1),
            ),
            "paper clipping b=2": (
                byz.PaperClipping(2),
                _np_cs_he(own, messages, weights, valid, 2),
            ),
        }
        for name, (rule, expected) in check.items():
            got = np.asarray(jax.jit(rule)(*args64))
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=name)
    for rule, expected in check.values():  # float32 too
        np.testing.assert_allclose(np.asarray(rule(*args)), expected, rtol=2e-5, atol=2e-6)


def test_trimmed_mean_without_trimming_is_the_mean_and_the_median_of_odd_counts_the_middle():
    own, messages, weights = _vectors("random")
    valid = jnp.ones(5, bool)
    inputs = np.concatenate([own[None], messages])
    got = byz.TrimmedMean(0)(jnp.asarray(own), jnp.asarray(messages), jnp.asarray(weights), valid)
    np.testing.assert_allclose(got, inputs.mean(axis=0), rtol=1e-6)
    values = jnp.array([3.0, -1.0, 7.0, 2.0, 5.0])  # 5 inputs (own + 4), one coordinate
    median = byz.Median()(values[:1], values[1:, None], jnp.zeros(4), jnp.ones(4, bool))
    assert float(median[0]) == 3.0


def test_alie_z_max_is_the_papers_formula():
    assert round(byz.alie_z(25, 11), 4) == 1.0676
    with pytest.raises(ValueError, match="fewer than n"):
        byz.alie_z(5, 5)


def _metropolis(n, seed):
    graph = nx.random_regular_graph(3, n, seed=seed)
    return decjax.from_networkx(graph)  # Metropolis weights: 1/4, non-dyadic sums


TOPOLOGIES = {
    "ring": lambda: decjax.ring(N),
    "exponential": lambda: decjax.exponential(N),
    "random regular (Metropolis)": lambda: _metropolis(N, 1),
    "one-peer exponential (time-varying)": lambda: decjax.one_peer_exponential(N),
    "faulty random regular (links fail per step)": lambda: decjax.topology.with_faults(
        _metropolis(N, 1), key=jax.random.key(0), link_failure=0.3
    ),
}


@pytest.mark.parametrize("make", list(TOPOLOGIES.values()), ids=list(TOPOLOGIES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", [byz.Clipping(1e30), byz.CSPlus(0), byz.PaperClipping(0)], ids=str)
def test_clipping_with_a_radius_above_every_distance_is_plain_gossip_bit_for_bit(make, dtype, rule):
    """Clipping with a radius above every distance, and CS+ tolerating no Byzantine
    neighbour (an infinite radius), are plain gossip bit for bit."""
    with jax.enable_x64(dtype == "float64"):
        topology = make()
        x = jax.random.normal(jax.random.key(0), (N, 7), dtype)
        lists = byz.neighbour_lists(topology, rule)
        for step in range(3):
            robust = byz.robust_mix(byz.Robust(rule), lists, x, jnp.int32(step))
            plain = decjax.mix(topology, x, step, backend="sparse")
            np.testing.assert_array_equal(robust, plain)
            x = plain


def test_cs_plus_clips_the_two_b_farthest_to_the_next_distance_with_uniform_weights():
    """Uniform weights 1/6 over 5 neighbours at distances 1..5 along one axis, b = 1: the
    radius is the third distance (3), so the two farthest move only 3 each."""
    own = jnp.zeros(2)
    messages = jnp.array([[1.0, 0], [2, 0], [3, 0], [4, 0], [5, 0]])
    got = byz.CSPlus(1)(own, messages, jnp.full(5, 1 / 6), jnp.ones(5, bool))
    np.testing.assert_allclose(got, [(1 + 2 + 3 + 3 + 3) / 6, 0], rtol=1e-6)


def test_ios_drops_the_outlier_and_averages_the_rest_with_renormalised_weights():
    own = jnp.zeros(1)
    messages = jnp.array([[1.0], [2.0], [100.0], [0.0]])
    valid = jnp.array([True, True, True, False])  # the last slot is padding
    weights = jnp.array([0.25, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(byz.IOS(1)(own, messages, weights, valid), [3 / 3 / 1], rtol=1e-6)
    np.testing.assert_allclose(byz.IOS(0)(own, messages, weights, valid), [103 / 4], rtol=1e-6)


def test_byzantine_workers_placed_by_degree_are_the_hubs():
    star = decjax.topology.from_networkx(nx.star_graph(N - 1))
    assert byz.place_by_degree(star, 1) == (0,)
    assert byz.place_by_degree(star, 2, highest=False) == (1, 2)  # ties: lower indices
    degrees = dict(nx.barabasi_albert_graph(N, 2, seed=3).degree())
    hubs = byz.place_by_degree(
        decjax.topology.from_networkx(nx.barabasi_albert_graph(N, 2, seed=3)), 2
    )
    assert sorted(degrees, key=lambda i: (-degrees[i], i))[:2] == sorted(hubs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dissensus_with_epsilon_one_leaves_its_targets_unchanged_under_plain_gossip(dtype):
    with jax.enable_x64(dtype == "float64"):
        topology = _metropolis(N, 2)
        bad = (0, 5)
        x = jax.random.normal(jax.random.key(1), (N, 4), dtype)
        robust = byz.Robust(byz.Gossip(), byz.Byzantine(bad, byz.Dissensus(1.0)))
        lists = byz.neighbour_lists(topology, robust.rule)
        out = byz.robust_mix(robust, lists, x, jnp.int32(0))
        nbr, w = (np.asarray(a)[0] for a in lists.lists())
        targets = [i for i in range(N) if i not in bad and set(nbr[i][w[i] != 0]) & set(bad)]
        others = [i for i in range(N) if i not in bad and i not in targets]
        assert targets and others
        tol = 1e-6 if dtype == "float32" else 1e-14
        np.testing.assert_allclose(out[np.array(targets)], x[np.array(targets)], atol=tol)
        plain = decjax.mix(topology, x, 0, backend="sparse")
        np.testing.assert_array_equal(out[np.array(others)], plain[np.array(others)])
        np.testing.assert_array_equal(out[np.array(bad)], x[np.array(bad)])  # no combine


def test_per_receiver_attacks_see_the_receivers_honest_neighbourhood():
    """ALIE, IPM and sign flip against a hand computation on the ring: worker 2 receives from
    1 and 3; worker 3 is Byzantine."""
    x = jnp.arange(N * 2, dtype=jnp.float32).reshape(N, 2) ** 1.5
    lists = byz.neighbour_lists(decjax.ring(N), byz.Gossip())
    honest = np.asarray(x)[[2, 1]]  # the receiver and its honest neighbour
    expected = {
        byz.IPM(0.1): -0.1 * honest.mean(axis=0),
        byz.ALIE(1.5): honest.mean(axis=0) - 1.5 * honest.std(axis=0, ddof=1),
        byz.SignFlip(): -np.asarray(x)[3],
    }
    for attack, message in expected.items():
        robust = byz.Robust(byz.Gossip(), byz.Byzantine((3,), attack))
        out = byz.robust_mix(robust, lists, x, jnp.int32(0))
        third = 1 / 3
        by_hand = np.asarray(x)[2] + third * (honest[1] - x[2]) + third * (message - x[2])
        np.testing.assert_allclose(out[2], by_hand, rtol=1e-5, atol=1e-5)


def test_robust_dpsgd_sends_what_plain_dpsgd_sends():
    x = jax.random.normal(jax.random.key(2), (N, 3))
    grads = jax.random.normal(jax.random.key(3), (N, 3))
    robust = byz.Robust(byz.Median(), byz.Byzantine((1,), byz.Gaussian(2.0)))
    plain, tx = decjax.dpsgd(0.1, decjax.ring(N)), decjax.dpsgd(0.1, decjax.ring(N), robust=robust)
    _, _, info = tx.step(grads, tx.init(x), x)
    _, _, info_plain = plain.step(grads, plain.init(x), x)
    assert float(info["bytes_sent"]) == float(info_plain["bytes_sent"]) > 0


def test_bad_robust_arguments_are_refused_in_one_line():
    ring = decjax.ring(N)
    cases = [
        (lambda: byz.Byzantine((1,), "alie"), TypeError, "attack must be"),
        (lambda: byz.Robust("median"), TypeError, "rule must be"),
        (lambda: byz.Byzantine((1, 1), byz.IPM()), ValueError, "twice"),
        (lambda: byz.Byzantine(tuple(range(N)), byz.IPM()).mask(N), ValueError, "no honest"),
        (lambda: byz.Byzantine((N,), byz.IPM()).mask(N), ValueError, "indices in"),
        (lambda: byz.neighbour_lists(ring, byz.TrimmedMean(2)), ValueError, "at least 4"),
        (lambda: byz.neighbour_lists(ring, byz.Krum(1)), ValueError, "at least 3"),
        (
            lambda: byz.neighbour_lists(decjax.topology.epidemic(N, 2), byz.Median()),
            ValueError,
            "draws its links at random",
        ),
        (
            lambda: decjax.dpsgd(0.1, ring, rounds=2, robust=byz.Robust()),
            ValueError,
            "one round",
        ),
        (lambda: byz.Clipping(-1.0), ValueError, "tau"),
        (lambda: byz.place(N, N), ValueError, "count"),
        (lambda: byz.place_by_degree(ring, N), ValueError, "count"),
        (lambda: byz.neighbour_lists(ring, byz.CSPlus(2)), ValueError, "at least 4"),
        (lambda: byz.neighbour_lists(ring, byz.IOS(3)), ValueError, "at least 3"),
        (lambda: byz.LabelFlip(1), ValueError, "classes"),
        (lambda: byz.IOS(-1), ValueError, "f"),
    ]
    for build, error, match in cases:
        with pytest.raises(error, match=match):
            build()


@pytest.mark.parametrize("m", [1, 2, 5, 9, 16, 17])
def test_the_sorting_network_sorts_like_jnp_sort(m):
    values = jax.random.normal(jax.random.key(m), (m, 300))
    values = values.at[0, :10].set(jnp.inf).at[-1, 5:15].set(values[0, 5:15])  # inf, ties
    np.testing.assert_array_equal(byz.rules.sort_rows(values), jnp.sort(values, axis=0))


def test_the_spectral_attack_sends_its_formula_with_networkx_fiedler_vector():
    """Two honest cliques joined by one edge, a Byzantine worker on each bridge end: the
    honest Fiedler vector is networkx's (weighted, up to sign) and every Byzantine message
    is x_i + c phi_i sum_j phi_j x_j (checked through gossip: one Byzantine neighbour)."""
    graph = nx.barbell_graph(3, 0)  # 0-1-2 and 3-4-5, edge 2-3
    graph.add_edges_from([(2, 6), (3, 7)])
    topology = decjax.topology.from_networkx(graph, weights="metropolis")
    bad = byz.Byzantine((6, 7), byz.Spectral(0.7))
    lists = byz.neighbour_lists(topology, byz.Gossip(), bad)
    phi = byz.honest_fiedler(lists, bad.honest(8))
    w = np.asarray(topology.numpy_matrices()[0])
    honest_graph = nx.Graph()
    honest_graph.add_weighted_edges_from(
        (i, j, w[i, j]) for i in range(6) for j in range(i + 1, 6) if w[i, j] > 0
    )
    reference = nx.fiedler_vector(honest_graph, weight="weight", method="tracemin_lu", seed=0)
    reference = reference[np.argsort(list(honest_graph.nodes))]
    assert np.allclose(np.abs(phi[:6] @ reference), 1.0, atol=1e-8)
    assert np.all(phi[6:] == 0)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(3), (8, 4), jnp.float64)
        out = byz.robust_mix(byz.Robust(byz.Gossip(), bad), lists, x, jnp.int32(0))
        x = np.asarray(x)
        attack = x + 0.7 * phi[:, None] * (phi @ x)[None, :]
        expected = x.copy()
        for i in range(6):
            for j in range(8):
                if i != j and w[i, j] > 0:
                    sent = attack[i] if j >= 6 else x[j]
                    expected[i] += w[i, j] * (sent - x[i])
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-12)


def test_echo_under_plain_gossip_is_gossip_without_the_byzantine_workers():
    topology = _metropolis(N, 2)
    bad = byz.Byzantine((1, 4), byz.Echo())
    lists = byz.neighbour_lists(topology, byz.Gossip(), bad)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(5), (N, 3), jnp.float64)
        out = np.asarray(byz.robust_mix(byz.Robust(byz.Gossip(), bad), lists, x, jnp.int32(0)))
    w = np.asarray(topology.numpy_matrices()[0])
    x = np.asarray(x)
    honest = [i for i in range(N) if i not in bad.workers]
    for i in honest:
        expected = x[i] + sum(w[i, j] * (x[j] - x[i]) for j in honest if j != i)
        np.testing.assert_allclose(out[i], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[list(bad.workers)], x[list(bad.workers)])


def test_on_a_faulty_graph_the_rules_take_what_arrives_and_trimming_shrinks():
    """On a ring whose links fail, a worker whose two links are down at a step keeps its
    model under every rule, and the trimmed mean with fewer inputs than 2b + 1 trims less
    (the mean of three values with b = 2 drops one each side)."""
    faulty = decjax.topology.with_faults(decjax.ring(N), key=jax.random.key(2), link_failure=0.5)
    x = jax.random.normal(jax.random.key(4), (N, 3))
    seen = 0
    for rule in (byz.Median(), byz.TrimmedMean(1), byz.GeometricMedian(), byz.IOS(1)):
        lists = byz.neighbour_lists(faulty, rule)
        for step in range(4):
            out = byz.robust_mix(byz.Robust(rule), lists, x, jnp.int32(step))
            _, w = faulty.realized(step).realized_lists(0)
            isolated = np.asarray((w != 0).sum(axis=1) == 0)
            seen += int(isolated.sum())
            np.testing.assert_array_equal(np.asarray(out)[isolated], np.asarray(x)[isolated])
    assert seen > 0  # the draw isolates some worker at some step
    values = jnp.array([[3.0], [-1.0], [7.0]])  # own + 2 messages, b = 2
    got = byz.TrimmedMean(2)(values[0], values[1:], jnp.ones(2), jnp.ones(2, bool))
    assert float(got[0]) == 3.0
