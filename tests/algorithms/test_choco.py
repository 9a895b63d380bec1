"""Choco-SGD: reduction to ATC D-PSGD, compression, bytes."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import quadratic_grads, scan_run, step_loop

import decjax

N, D = 8, 4


def test_choco_with_identity_compressor_is_atc_dpsgd(quad):
    topo = decjax.torus(2, 4)
    choco = decjax.choco_sgd(0.1, topo, compressor=decjax.gossip.identity(), consensus_step=1.0)
    x_choco, _ = scan_run(choco, quad, 50)
    x_dpsgd, _ = scan_run(decjax.dpsgd(0.1, topo), quad, 50)
    np.testing.assert_allclose(x_choco, x_dpsgd, atol=1e-5)


@pytest.mark.parametrize(
    "compressor",
    [
        decjax.gossip.top_k(1),
        decjax.gossip.sign(),
        decjax.gossip.qsgd(4),
        decjax.gossip.random_k(fraction=0.5),
    ],
    ids=lambda c: c.name,
)
def test_choco_with_compression_reaches_a_neighbourhood_of_the_optimum(compressor, quad):
    tx = decjax.choco_sgd(0.02, decjax.ring(N), compressor=compressor, consensus_step=0.2)
    x, _, recorded = step_loop(tx, quad.init_params(), lambda x, t: quadratic_grads(quad, x), 3000)
    dist = float(jnp.sum((x.mean(0) - quad.optimum) ** 2))
    assert dist < 0.05
    full = 3000 * 2 * D * 4  # uncompressed messages to 2 neighbours
    assert float(recorded["bytes_sent"]) < full


def test_compressor_larger_than_the_model_is_rejected_at_init():
    tx = decjax.choco_sgd(0.1, decjax.ring(4), compressor=decjax.gossip.top_k(100))
    with pytest.raises(ValueError, match="k=100 is larger than the dimension d=12"):
        tx.init(jnp.zeros((4, 12)))


def test_a_fraction_too_small_for_one_coordinate_still_sends_one():
    """top_k(fraction=1e-9) of a 40-dimensional model: k = ceil(4e-8) = 1, one value and its
    index per message (never an empty message), what bytes_sent counts."""
    compressor = decjax.gossip.top_k(fraction=1e-9)
    q = compressor.compress(None, jnp.arange(40.0) - 20.0)  # top-k needs no key
    assert int((q != 0).sum()) == 1 and float(q[0]) == -20.0
    assert compressor.bytes(40, 4) == 8
