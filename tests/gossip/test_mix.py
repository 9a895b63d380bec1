"""Gossip on every backend against a float64 dense reference; rounds, tracing, dtypes, sharding."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import all_topologies, dense_reference

import decjax
from decjax.topology import stack

# float32 mixing of O(1) values: a few ulps per round.
ATOL = 2e-6


MIXERS = {
    backend: jax.jit(lambda t, x, s, backend=backend: decjax.mix(t, x, s, backend=backend))
    for backend in decjax.topology.representations()
}


def _tree(n, key):
    k1, k2 = jax.random.split(key)
    return {"w": jax.random.normal(k1, (n, 3, 2)), "b": jax.random.normal(k2, (n,))}


@pytest.mark.parametrize("n", [pytest.param(6, marks=pytest.mark.slow), 8])
def test_every_backend_matches_dense_reference(n, key):
    tree = _tree(n, key)
    for topo in all_topologies(n):
        for backend in topo.backends:
            for step in range(topo.period + 1):
                out = MIXERS[backend](topo, tree, step)
                for name in tree:
                    np.testing.assert_allclose(
                        out[name],
                        dense_reference(topo, tree[name], step),
                        atol=ATOL,
                        err_msg=f"{topo.name} backend={backend} step={step}",
                    )


@pytest.mark.parametrize("n", [5, pytest.param(16, marks=pytest.mark.slow)])
def test_mixing_preserves_the_worker_average(n, key):
    x = 10.0 * jax.random.normal(key, (n, 7))
    for topo in all_topologies(n):
        y = decjax.mix(topo, x, 1, rounds=3)
        np.testing.assert_allclose(y.mean(axis=0), x.mean(axis=0), atol=1e-5, err_msg=topo.name)


def test_rounds_apply_consecutive_matrices(key):
    topo = decjax.one_peer_exponential(8)
    x = jax.random.normal(key, (8, 4))
    for start in range(4):
        y = decjax.mix(topo, x, start, rounds=3)
        np.testing.assert_allclose(y, dense_reference(topo, x, start, rounds=3), atol=ATOL)
        # n = 2^3: three consecutive one-peer rounds average exactly
        np.testing.assert_allclose(y, jnp.broadcast_to(x.mean(axis=0), x.shape), atol=ATOL)


def test_ring_rounds_contract_consensus_distance_by_lambda2(key):
    n = 16
    x = jax.random.normal(key, (n, 3))
    y = decjax.mix(decjax.ring(n), x, rounds=50)
    lam = (1 + 2 * np.cos(2 * np.pi / n)) / 3
    ratio = float(decjax.consensus_distance(y) / decjax.consensus_distance(x))
    assert ratio <= lam ** (2 * 50) * (1 + 1e-3)


def test_time_varying_step_is_traced_without_recompiling(key):
    topo = decjax.one_peer_exponential(16)
    x = jax.random.normal(key, (16, 2))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step_mix(x, step):
        return decjax.mix(topo, x, step)

    for step in range(10):
        np.testing.assert_allclose(
            step_mix(x, jnp.int32(step)), dense_reference(topo, x, step), atol=ATOL
        )


def test_mix_vmaps_over_stacked_topologies_and_over_batches(key):
    n = 8
    topos = [decjax.ring(n), decjax.exponential(n), decjax.one_peer_exponential(n)]
    both = stack(topos)
    x = jax.random.normal(key, (n, 5))
    out = jax.vmap(lambda t: decjax.mix(t, x, 2))(both)
    for i, topo in enumerate(topos):
        np.testing.assert_allclose(out[i], dense_reference(topo, x, 2), atol=ATOL)
    xs = jax.random.normal(key, (4, n, 5))
    out = jax.vmap(lambda x: decjax.mix(decjax.ring(n), x))(xs)
    np.testing.assert_allclose(out[3], dense_reference(decjax.ring(n), xs[3], 0), atol=ATOL)


def test_low_precision_leaves_keep_their_dtype():
    x = jnp.arange(8.0, dtype=jnp.bfloat16)[:, None]
    y = decjax.mix(decjax.ring(8), x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(y, np.float32), dense_reference(decjax.ring(8), x, 0), atol=0.05
    )


def test_dense_backend_uses_highest_precision():
    hlo = (
        jax.jit(lambda x: decjax.mix(decjax.ring(8), x, backend="dense"))
        .lower(jnp.ones((8, 4)))
        .as_text()
    )
    assert "HIGHEST" in hlo.upper()


def test_mix_rejects_bad_input():
    ring = decjax.ring(4)
    with pytest.raises(ValueError, match=r"leading \(worker\) axis of size n=4"):
        decjax.mix(ring, jnp.ones((3, 2)))
    with pytest.raises(TypeError, match="floating-point leaves only"):
        decjax.mix(ring, jnp.ones((4,), jnp.int32))
    with pytest.raises(ValueError, match="can be mixed with"):
        decjax.mix(decjax.torus(2, 2), jnp.ones((4,)), backend="shift")
    with pytest.raises(ValueError, match="backend must be one of"):
        decjax.mix(ring, jnp.ones((4,)), backend="fft")
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        decjax.mix(ring, jnp.ones((4,)), rounds=0)
    with pytest.raises(TypeError, match="topology must be a Topology"):
        decjax.mix(np.eye(4), jnp.ones((4,)))


def test_mix_works_on_sharded_worker_axis(key):
    """The same call on a worker axis sharded over the 8 emulated devices."""
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("workers",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("workers"))
    x = jax.random.normal(key, (16, 3))
    xs = jax.device_put(x, sharding)
    for topo in [decjax.ring(16), decjax.torus(4, 4), decjax.complete(16)]:
        y = jax.jit(lambda x, t=topo: decjax.mix(t, x))(xs)
        np.testing.assert_allclose(y, dense_reference(topo, x, 0), atol=ATOL)
