"""The topology catalogue: every named graph for any n, and the refusals."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import all_topologies

import decjax
from decjax.topology import (
    by_name,
)


@pytest.mark.parametrize("n", [5, 8, 16])
def test_every_catalogued_topology_is_doubly_stochastic_and_nonnegative(n):
    for topo in all_topologies(n):
        mats = topo.numpy_matrices()
        assert mats.shape == (topo.period, n, n), topo
        assert np.all(mats >= 0), topo
        np.testing.assert_allclose(mats.sum(axis=2), 1.0, atol=1e-6, err_msg=topo.name)
        np.testing.assert_allclose(mats.sum(axis=1), 1.0, atol=1e-6, err_msg=topo.name)


def test_by_name_builds_every_name():
    for name in decjax.topology.NAMES:
        topo = by_name(name, 16)
        assert topo.n == 16
        mats = (
            topo.matrices()
            if topo.has_fixed_matrices()
            else jnp.stack([topo.matrix(t) for t in range(3)])
        )
        sums = mats.sum(axis=-2) if topo.push else mats.sum(axis=-1)  # push: columns
        assert jnp.allclose(sums, 1.0, atol=1e-6), name


def test_a_prime_torus_or_grid_by_name_is_refused():
    with pytest.raises(ValueError, match=r"n=13 has no such factorization"):
        decjax.topology.by_name("torus", 13)
    with pytest.raises(ValueError, match=r"grid needs n = rows x cols"):
        decjax.topology.by_name("grid", 7)
