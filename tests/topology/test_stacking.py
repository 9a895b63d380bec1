"""Stacked topologies: shapes, matrices, jit and vmap."""

import jax
import numpy as np

import decjax
from decjax.topology import (
    stack,
)


def test_topology_passes_through_jit_and_stack_vmaps():
    topo = decjax.one_peer_exponential(8)
    mat = jax.jit(lambda t, s: t.matrix(s))(topo, 2)
    np.testing.assert_allclose(mat, topo.matrix(2))
    both = stack([decjax.ring(8), decjax.one_peer_exponential(8), decjax.complete(8)])
    assert both.weights.shape == (3, 3, 8, 3)  # periods 1, 3, 1 tiled to lcm 3; k = 3
    assert both.averaging.shape == (3, 3)  # the complete graph's strength, 0 for the others
    mats = jax.vmap(lambda t: t.matrix(4))(both)
    np.testing.assert_allclose(mats[1], topo.matrix(4))
    np.testing.assert_allclose(mats[0], decjax.ring(8).matrix())
    np.testing.assert_allclose(mats[2], decjax.complete(8).matrix(), atol=1e-7)


def test_stacked_topologies_keep_their_matrices_and_the_documented_shapes():
    members = [decjax.ring(8), decjax.one_peer_exponential(8), decjax.torus(2, 4)]
    both = decjax.topology.stack(members)
    assert both.representation == "sparse" and both.batch_shape == (3,)
    assert both.matrix(0).shape == (3, 8, 8)
    for i, t in enumerate(members):
        for step in range(4):
            np.testing.assert_allclose(both.matrix(step)[i], t.matrix(step), atol=1e-7)
    averaging = decjax.topology.stack([decjax.ring(8), decjax.complete(8), decjax.solo(8)])
    assert averaging.representation == "sparse" and averaging.matrix(3).shape == (3, 8, 8)
    dense = decjax.topology.stack([decjax.ring(8), decjax.ring(8).to("dense")])
    assert dense.representation == "dense" and dense.matrix(3).shape == (2, 8, 8)
