"""Topology kinds: one class per storage, conversions, pytree behaviour, and adding a kind."""

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import all_topologies

import decjax
from decjax.topology import Topology, kinds
from decjax.topology.base import KINDS, kind


def test_each_constructor_returns_the_kind_that_stores_it_cheapest():
    assert type(decjax.complete(8)) is kinds.Average
    assert type(decjax.topology.periodic_average(8, 4)) is kinds.Average
    assert type(decjax.ring(8)) is kinds.Shift
    assert type(decjax.one_peer_exponential(8)) is kinds.Shift
    assert type(decjax.topology.torus(2, 4)) is kinds.Sparse
    assert type(decjax.topology.from_matrix(np.full((4, 4), 0.25))) is kinds.Dense
    flaky = decjax.topology.with_faults(decjax.ring(8), key=jax.random.key(0), link_failure=0.1)
    assert type(flaky) is kinds.Faulty and type(flaky.base) is kinds.Sparse
    assert flaky.representation == "sparse" and flaky.backends == ("sparse", "dense")
    assert all(isinstance(t, Topology) for t in all_topologies(8))


def test_the_kinds_are_ordered_by_generality():
    assert decjax.topology.representations() == ("average", "shift", "sparse", "dense", "random")
    assert decjax.topology.backends_for("random") == ("random",)  # no fixed matrices
    assert decjax.ring(8).backends == ("shift", "sparse", "dense")
    assert decjax.topology.backends_for("sparse") == ("sparse", "dense")
    with pytest.raises(ValueError, match="unknown kind 'ring'"):
        decjax.topology.backends_for("ring")


@pytest.mark.parametrize("n", [6, 8])
def test_every_conversion_keeps_every_matrix(n):
    for topo in [*all_topologies(n), decjax.topology.lazy(decjax.ring(n), 0.3)]:
        reference = topo.numpy_matrices()
        for name in topo.backends:
            other = topo.to(name)
            assert other.representation == name and type(other) is KINDS[name]
            assert (other.n, other.period, other.name) == (topo.n, topo.period, topo.name)
            np.testing.assert_allclose(
                np.asarray(other.matrices()), reference, atol=1e-6, err_msg=f"{topo} as {name}"
            )


def test_converting_upward_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"cannot be stored as 'shift'.*converts to \('dense',\)"):
        decjax.topology.from_matrix(np.full((4, 4), 0.25)).to("shift")


def test_static_fields_are_metadata_and_weights_are_leaves():
    ring = decjax.ring(8)
    leaves, treedef = jax.tree.flatten(ring)
    assert len(leaves) == 1 and leaves[0] is ring.weights
    again = jax.tree.unflatten(treedef, [2 * leaves[0]])
    assert type(again) is kinds.Shift and again.offsets == ring.offsets
    np.testing.assert_allclose(again.weights, 2 * ring.weights)
    torus = decjax.topology.torus(2, 4)
    assert len(jax.tree.leaves(torus)) == 2  # neighbour indices and weights


def test_new_weights_of_the_same_kind_reuse_the_compiled_program():
    traces = []

    @jax.jit
    def second_row(topo):
        traces.append(None)
        return topo.matrix(0)[1]

    ring = decjax.ring(8)
    second_row(ring)
    second_row(ring.replace(weights=jnp.full_like(ring.weights, 0.25)))  # new leaves only
    assert len(traces) == 1
    second_row(decjax.exponential(8))  # other offsets: static metadata, a new program
    assert len(traces) == 2


def test_replace_keeps_the_kind_and_the_class_is_frozen():
    ring = decjax.ring(8)
    renamed = ring.replace(name="my ring")
    assert type(renamed) is kinds.Shift and renamed.name == "my ring" and ring.name == "ring"
    with pytest.raises(AttributeError):
        ring.name = "other"


@pytest.mark.parametrize("reweight", ["metropolis", pytest.param("self", marks=pytest.mark.slow)])
def test_faults_realized_on_a_matrix_match_faults_realized_on_lists(reweight):
    flaky = decjax.topology.with_faults(
        decjax.topology.erdos_renyi(12, 0.4, key=jax.random.key(1)),
        key=jax.random.key(2),
        link_failure=0.3,
        node_failure=0.1,
        reweight=reweight,
    )
    as_matrix = flaky.to("dense")
    assert type(as_matrix.base) is kinds.Dense and as_matrix.model is flaky.model
    matrix = jax.jit(lambda topology, step: topology.matrix(step))
    for step in range(40):
        from_lists = np.asarray(matrix(flaky, step))
        from_matrix = np.asarray(matrix(as_matrix, step))
        off = ~np.eye(12, dtype=bool)
        np.testing.assert_array_equal(from_matrix[off], from_lists[off])  # the same links
        np.testing.assert_allclose(np.diag(from_matrix), np.diag(from_lists), atol=1e-6)


def test_messages_per_worker_counts_the_off_diagonal_of_every_kind():
    flaky = decjax.topology.with_faults(decjax.ring(8), key=jax.random.key(0), link_failure=0.5)
    both = jax.jit(
        lambda topology, step: (topology.matrix(step), topology.messages_per_worker(step))
    )
    for topo in [*all_topologies(8), flaky]:
        for step in range(3):
            w, messages = both(topo, step)
            expected = ((np.asarray(w) != 0) & ~np.eye(8, dtype=bool)).sum() / 8
            assert float(messages) == pytest.approx(expected), topo


def test_a_new_kind_is_one_class():
    """A kind written here (a scaled identity: ``W = I``, no communication) plugs into gossip,
    the dense matrices and analysis without editing any other module."""

    @kind
    class Silent(Topology):
        weights: Any
        representation: ClassVar[str] = "silent"
        rank: ClassVar[int] = 4  # converts to nothing else
        step_ndim: ClassVar[int] = 1

        def dense_weights(self):
            return jnp.broadcast_to(jnp.eye(self.n), (self.period, self.n, self.n))

        def numpy_matrices(self):
            return np.broadcast_to(np.eye(self.n), (self.period, self.n, self.n)).copy()

        def delta(self, x, step):
            return jnp.zeros_like(x)

        def messages_per_worker(self, step=0):
            return jnp.float32(0.0)

    try:
        silent = Silent(n=4, period=1, name="silent", weights=jnp.zeros((1,)))
        x = jnp.arange(4.0)
        np.testing.assert_array_equal(decjax.mix(silent, x), x)
        np.testing.assert_array_equal(jax.jit(decjax.mix)(silent, x), x)
        assert silent.backends == ("silent",) and silent.matrix(0).shape == (4, 4)
        assert decjax.spectral_gap(silent) == pytest.approx(0.0)
        # discovered, not snapshotted at import: the backends and the gossip see it
        assert "silent" in decjax.topology.representations()
        assert decjax.gossip.resolve_backend(silent, "silent") == "silent"
        assert "silent" in decjax.topology.backends_for("sparse")  # rank 4 and convertible
        np.testing.assert_array_equal(decjax.mix(silent, x, backend="silent"), x)
    finally:
        KINDS.pop("silent")
    assert "silent" not in decjax.topology.representations()
