"""Learned topologies: gradients through the simulation, feasibility, and a win over MH."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import decjax
from decjax import learn


def sparse_graph(n: int) -> nx.Graph:
    graph = nx.cycle_graph(n)
    graph.add_edges_from((i, (i + 5) % n) for i in range(0, n, 4))
    return graph


def finite_difference_check(objective, weights, seed: int):
    """Central differences of objective(W(theta)) at a random theta (no ties in the max)."""
    f = jax.jit(lambda t: objective(weights.matrix(t)))
    theta = weights.metropolis() + 0.3 * jax.random.normal(
        jax.random.key(seed), (weights.size,), jnp.float64
    )
    grad = np.asarray(jax.grad(f)(theta))
    eps = 1e-6
    numeric = np.array(
        [
            (f(theta.at[k].add(eps)) - f(theta.at[k].add(-eps))) / (2 * eps)
            for k in range(len(theta))
        ]
    )
    error = np.max(np.abs(grad - numeric)) / np.max(np.abs(numeric))
    assert error < 1e-3, error


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_gradients_match_finite_differences(x64):
    n = 8
    weights = learn.EdgeWeights(sparse_graph(n))
    x0 = jax.random.normal(jax.random.key(0), (n, 3), jnp.float64)
    finite_difference_check(learn.consensus_objective(x0, 4), weights, 1)
    labels = np.repeat(np.arange(4), 2)[:, None].repeat(5, axis=1)
    finite_difference_check(
        learn.heterogeneity_objective(learn.label_proportions(labels, 4)), weights, 2
    )
    finite_difference_check(learn.neighbors_objective(0.9), weights, 4)
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(0))
    data = jax.tree.map(lambda v: v.astype(jnp.float64), q.data)
    params = q.init_params().astype(jnp.float64)
    through_a_run = learn.training_objective(
        q.loss, params, data, steps=10, learning_rate=0.1, key=jax.random.key(0)
    )
    finite_difference_check(through_a_run, weights, 3)


def test_the_parametrisation_is_always_doubly_stochastic_on_the_graph():
    graph = sparse_graph(12)
    weights = learn.EdgeWeights(graph)
    support = nx.to_numpy_array(graph) + np.eye(12) > 0
    for seed in range(5):
        theta = 3.0 * jax.random.normal(jax.random.key(seed), (weights.size,))
        w = np.asarray(weights.matrix(theta), np.float64)
        np.testing.assert_allclose(w, w.T, atol=1e-7)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(w >= 0) and np.all(w[~support] == 0)
    np.testing.assert_allclose(
        weights.matrix(weights.metropolis()), decjax.from_networkx(graph).matrix(), atol=1e-6
    )
    with pytest.raises(ValueError, match="theta must have shape"):
        weights.matrix(jnp.zeros(3))


@pytest.mark.slow
def test_learned_weights_beat_metropolis_hastings_on_label_sorted_data():
    """Learned on one seed's minibatches, better on the objective and on another seed's run."""
    n = 16
    data = decjax.data.distribute(decjax.data.load_digits(), n, "sorted", key=0)
    model = decjax.problems.logistic_regression(64, 10)
    params = decjax.replicate(model.init(jax.random.key(0)), n)

    def objective(seed):
        return learn.training_objective(
            model.loss,
            params,
            data,
            steps=50,
            learning_rate=0.5,
            key=jax.random.key(seed),
            batch_size=16,
        )

    graph = sparse_graph(n)
    learned = learn.learn_weights(graph, objective(0), steps=60, learning_rate=0.1)
    w = np.asarray(learned.topology.matrix(), np.float64)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert learned.history.min() < 0.9 * learned.initial
    metropolis = decjax.from_networkx(graph).matrix()
    held_out = objective(1)
    assert float(held_out(learned.topology.matrix())) < 0.9 * float(held_out(metropolis))


@pytest.mark.slow
def test_a_heterogeneity_aware_objective_learns_across_the_label_split():
    n = 16
    data = decjax.data.distribute(decjax.data.load_digits(), n, "sorted", key=0)
    labels = np.asarray(data.y)[np.asarray(data.indices)]
    objective = learn.heterogeneity_objective(learn.label_proportions(labels, 10))
    learned = learn.learn_weights(sparse_graph(n), objective, steps=200, learning_rate=0.05)
    assert learned.history.min() < 0.95 * learned.initial
    assert float(objective(learned.topology.matrix())) < learned.initial


@pytest.mark.slow
def test_the_neighbors_objective_is_effective_neighbors_and_learning_raises_it(x64):
    graph = sparse_graph(12)
    metropolis = decjax.from_networkx(graph)
    objective = learn.neighbors_objective(0.9)
    w = jnp.asarray(metropolis.matrix(), jnp.float64)
    assert -float(objective(w)) == pytest.approx(decjax.effective_neighbors(metropolis, 0.9))
    ring = jnp.asarray(decjax.ring(12).matrix(), jnp.float64)  # repeated eigenvalues
    assert np.all(np.isfinite(jax.grad(objective)(ring)))
    learned = learn.learn_weights(graph, objective, steps=100, learning_rate=0.05)
    assert decjax.effective_neighbors(learned.topology, 0.9) > 1.02 * decjax.effective_neighbors(
        metropolis, 0.9
    )


def test_the_training_objective_runs_the_algorithm_it_is_given():
    """``training_objective(algorithm=...)``: the objective is the given algorithm's run on
    ``W``, equal to that run done by hand; D-PSGD is the default."""
    n = 8
    q = decjax.problems.quadratics(n, 3, key=jax.random.key(0))
    weights = learn.EdgeWeights(sparse_graph(n))
    w = weights.matrix(weights.metropolis())
    options = {"steps": 6, "learning_rate": 0.1, "key": jax.random.key(1)}
    default = learn.training_objective(q.loss, q.init_params(), q.data, **options)(w)
    dpsgd = learn.training_objective(
        q.loss, q.init_params(), q.data, algorithm=decjax.dpsgd, **options
    )(w)
    tracking = learn.training_objective(
        q.loss, q.init_params(), q.data, algorithm=decjax.gradient_tracking, **options
    )(w)
    assert float(default) == float(dpsgd)
    run = decjax.make_run(q.loss, decjax.gradient_tracking(0.1, learn.traced_topology(w)), steps=6)
    state, _ = run(q.init_params(), jax.random.key(1), q.data)
    by_hand = jnp.mean(
        jax.vmap(lambda x: jnp.mean(jax.vmap(q.loss, (None, 0))(x, q.data)))(state.params)
    )
    np.testing.assert_allclose(float(tracking), float(by_hand), rtol=1e-6)
    assert float(tracking) != float(dpsgd)
