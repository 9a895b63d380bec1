"""Lazy (slack) topologies: kappa W + (1 - kappa) I in every kind."""

import jax
import numpy as np
import pytest

import decjax
from decjax.topology import (
    from_matrix,
)


@pytest.mark.parametrize(
    "topo",
    [
        decjax.ring(6),
        decjax.torus(2, 3),
        decjax.complete(6),
        decjax.one_peer_exponential(6),
        from_matrix(np.full((6, 6), 1 / 6)),
    ],
    ids=lambda t: t.representation + "-" + t.name,
)
def test_lazy_topology_is_kappa_w_plus_identity_in_every_representation(topo):
    lazy = decjax.topology.lazy(topo, 0.25)
    assert lazy.representation == topo.representation and lazy.period == topo.period
    expected = 0.25 * topo.numpy_matrices() + 0.75 * np.eye(6)[None]
    np.testing.assert_allclose(lazy.numpy_matrices(), expected, atol=1e-7)
    traced = jax.jit(lambda t: t.matrices())(lazy)  # the in-jit conversion agrees
    np.testing.assert_allclose(traced, expected, atol=1e-6)
