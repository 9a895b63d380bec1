"""RelaySGD against the authors' message-level simulation, its independence of zeta^2, and
what it sends."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from decjax.algorithms import relaysgd, relaysum
from decjax.gossip import TRAFFIC
from decjax.topology import binary_tree, chain, double_binary_trees, tree_edges


def _authors_relaysgd(trees, n, x0, a, b, lr, steps):
    """paper-figures/algorithms.py ``relaysum_model`` with the MultiTopologyRelayMechanism's
    split (coordinate c on tree c mod T), on f_i = a_i/2 |x - b_i|^2: dictionaries of
    messages and counts per directed edge, a loop over workers."""
    state = np.array(x0, np.float64)
    init = state[0].copy()
    period = len(trees)
    neighbours = [
        {i: sorted(j for e in edges for j in e if i in e and j != i) for i in range(n)}
        for edges in trees
    ]
    messages = [{} for _ in trees]
    counts = [{} for _ in trees]
    for _ in range(steps):
        state = state - lr * a[:, None] * (state - b)
        new_state = np.empty_like(state)
        for r in range(period):
            part = slice(r, None, period)
            nbrs, old_m, old_c = neighbours[r], messages[r], counts[r]
            new_m = {
                (i, j): state[i, part] + sum(old_m.get((k, i), 0.0) for k in nbrs[i] if k != j)
                for i in range(n)
                for j in nbrs[i]
            }
            new_c = {
                (i, j): 1 + sum(old_c.get((k, i), 0) for k in nbrs[i] if k != j)
                for i in range(n)
                for j in nbrs[i]
            }
            for i in range(n):
                num = 1 + sum(new_c[(k, i)] for k in nbrs[i])
                total = state[i, part] + sum(new_m[(k, i)] for k in nbrs[i])
                new_state[i, part] = (total + init[part] * (n - num)) / n
            messages[r], counts[r] = new_m, new_c
        state = new_state
    return state


@pytest.mark.parametrize(
    "build", [lambda: chain(7), lambda: binary_tree(11), lambda: double_binary_trees(8)]
)
def test_thirty_steps_match_the_authors_simulation(build):
    """float64, non-dyadic curvatures and a common non-zero start: to 1e-12."""
    tree = build()
    n, d = tree.n, 5
    rng = np.random.default_rng(4)
    a = rng.uniform(0.3, 1.7, n)
    b = rng.normal(size=(n, d)) * 3.0
    x0 = np.tile(rng.normal(size=(1, d)), (n, 1))
    expected = _authors_relaysgd(tree_edges(tree), n, x0, a, b, 0.37, 30)
    with jax.enable_x64(True):
        tx = relaysgd(0.37, tree)
        x = jnp.asarray(x0)
        state = tx.init(x)
        step = jax.jit(tx.step)
        for _ in range(30):
            x, state, _ = step(jnp.asarray(a)[:, None] * (x - jnp.asarray(b)), state, x)
    np.testing.assert_allclose(np.asarray(x), expected, rtol=0, atol=1e-12)


def _distance(tx, q, steps):
    """The worst worker's squared distance to the optimum at the end."""
    result = decjax.simulate(
        q.loss, q.init_params(), tx, q.data, steps=steps, key=0, progress=False
    )
    return float(np.max(np.sum((np.asarray(result.params) - np.asarray(q.optimum)) ** 2, 1)))


def test_zero_gradients_from_a_common_start_keep_every_model():
    """The workers not heard from count as the start point: nothing moves."""
    x = jnp.tile(jax.random.normal(jax.random.key(2), (1, 6)), (9, 1)) / 3.0
    tx = relaysgd(0.1, binary_tree(9))
    state = tx.init(x)
    for _ in range(7):
        x_next, state, _ = tx.step(jnp.zeros_like(x), state, x)
        np.testing.assert_allclose(x_next, x, rtol=0, atol=1e-7)


def test_no_heterogeneity_bias_where_gossip_keeps_one():
    """Full gradients, constant step: RelaySGD on a chain reaches the optimum at any zeta^2,
    D-PSGD on a ring (the same messages per step) stalls at a distance that grows with
    zeta^2."""
    relay, gossip = [], []
    for zeta2 in (0.1, 10.0):
        q = decjax.problems.quadratics(16, 4, key=jax.random.key(0), zeta2=zeta2)
        relay.append(_distance(relaysgd(0.3, chain(16)), q, 1500))
        gossip.append(_distance(decjax.dpsgd(0.3, decjax.ring(16)), q, 1500))
    assert max(relay) < 1e-8
    assert gossip[0] > 1e-4 and gossip[1] > 50 * gossip[0]


def test_the_record_counts_two_messages_per_tree_edge_with_their_counts():
    x = {"w": jnp.zeros((8, 10)), "b": jnp.zeros((8, 3))}  # 52 bytes per worker
    for tree, shares in [(chain(8), [52 + 4]), (double_binary_trees(8), [28 + 4, 24 + 4])]:
        tx = relaysgd(0.1, tree)
        _, _, record = tx.step(x, tx.init(x), x)
        expected = sum(2 * 7 * s for s in shares)
        assert float(record["bytes_sent"]) == pytest.approx(expected / 8)
        assert float(record[TRAFFIC].total_bytes(8)) == pytest.approx(expected)
        # a link both trees use carries both shares in one message
        links = {edge for edges in tree_edges(tree) for edge in edges}
        assert float(record[TRAFFIC].messages(8)) == 2 * len(links)


def test_composes_with_optax_and_keeps_its_record():
    tx = decjax.chain(optax.adam(1e-2), relaysum(binary_tree(8)))
    q = decjax.problems.quadratics(8, 3, key=jax.random.key(1))
    result = decjax.simulate(q.loss, q.init_params(), tx, q.data, steps=20, key=0, progress=False)
    assert float(result.metrics["bytes_sent"][-1]) == pytest.approx(
        20 * 2 * 7 * (12 + 4) / 8
    )  # cumulative
    assert np.all(np.isfinite(result.params))


@pytest.mark.slow
def test_momentum_and_a_schedule_are_local():
    """Momentum and a schedule act per worker: on a chain of 2 with identical gradients both
    workers move like one optax.sgd run (the relay averages equal models to themselves)."""
    schedule = optax.linear_schedule(0.2, 0.02, 10)
    tx = relaysgd(schedule, chain(2), momentum=0.9, nesterov=True)
    single = optax.sgd(schedule, momentum=0.9, nesterov=True)
    x, s = jnp.ones((2, 3)), None
    y, t = jnp.ones(3), single.init(jnp.ones(3))
    s = tx.init(x)
    for k in range(10):
        g = jnp.full((3,), 0.5 + k / 7)
        x, s, _ = tx.step(jnp.stack([g, g]), s, x)
        u, t = single.update(g, t, y)
        y = optax.apply_updates(y, u)
    np.testing.assert_allclose(x, jnp.stack([y, y]), rtol=1e-6)


def _sweep_over_trees():
    q = decjax.problems.quadratics(8, 3, key=jax.random.key(0))
    trees = [chain(8), binary_tree(8)]
    return decjax.sweep(
        q.loss,
        q.init_params(),
        lambda topology: relaysgd(0.1, topology),
        q.data,
        {"topology": trees},
        steps=5,
        key=0,
        progress=False,
    )


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: relaysgd(0.1, decjax.ring(8)), "spanning tree"),
        (lambda: relaysgd(0.1, decjax.complete(4)), "spanning tree"),
        (lambda: relaysgd(0.0, chain(4)), "learning_rate"),
        (lambda: relaysgd(0.1, chain(4), momentum=1.0), "momentum"),
        (lambda: relaysum("chain"), "Topology"),
        (_sweep_over_trees, "one tree per sweep"),
        (
            lambda: relaysgd(0.1, decjax.topology.with_faults(chain(8), key=0, link_failure=0.1)),
            "fixed graphs",
        ),
    ],
)
def test_bad_arguments_are_refused_in_one_line(build, words):
    with pytest.raises((ValueError, TypeError), match=words) as err:
        build()
    assert "\n" not in str(err.value)
