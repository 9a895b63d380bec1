"""Every algorithm constructor refuses bad arguments in one line."""

import jax.numpy as jnp
import optax
import pytest

import decjax


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: decjax.gradient_tracking(-1.0, decjax.ring(4)), ValueError, "learning_rate"),
        (lambda: decjax.gradient_tracking(0.1, decjax.ring(4), order="x"), ValueError, "order"),
        (lambda: decjax.d2(0.1, decjax.ring(8)), ValueError, r"lambda_min\(W\) > -1/3"),
        (lambda: decjax.d2(0.1, decjax.exponential(8)), ValueError, "symmetric"),
        (lambda: decjax.exact_diffusion(0.0, decjax.ring(4)), ValueError, "learning_rate"),
        (lambda: decjax.detag(0.1, decjax.ring(4), phase_length=0), ValueError, "phase_length"),
        (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum=1.0),
            ValueError,
            "gossip_momentum",
        ),
        (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum="fast"),
            ValueError,
            "gossip_momentum",
        ),
        (lambda: decjax.detag(0.1, decjax.one_peer_exponential(4)), ValueError, "static"),
        (lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), momentum=1.5), ValueError, "momentum"),
        (
            lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), buffer_decay=-0.1),
            ValueError,
            "buffer_decay",
        ),
        (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor="top_k"),
            TypeError,
            "Compressor",
        ),
        (
            lambda: decjax.choco_sgd(
                0.1, decjax.ring(4), compressor=decjax.gossip.sign(), consensus_step=0.0
            ),
            ValueError,
            "consensus_step",
        ),
        (lambda: decjax.gossip.top_k(0), ValueError, "k must be >= 1"),
        (lambda: decjax.gossip.top_k(3, fraction=0.1), ValueError, "exactly one"),
        (lambda: decjax.gossip.random_k(fraction=1.5), ValueError, "fraction"),
        (lambda: decjax.gossip.qsgd(0), ValueError, "levels"),
        (lambda: decjax.local_sgd(0.1, 4, every=0), ValueError, "every"),
        (lambda: decjax.gossip_pga(0.1, decjax.ring(4), every=-2), ValueError, "every"),
        (
            lambda: decjax.consensus_control(optax.sgd(0.1), decjax.ring(4), target=0.0),
            ValueError,
            "target",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1.0, max_rounds=0
            ),
            ValueError,
            "max_rounds",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1.0, estimator="psychic"
            ),
            ValueError,
            "estimator",
        ),
        (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.random_matching(4, key=0), target=1.0
            ),
            ValueError,
            "spectral_gap_value",
        ),
        (lambda: decjax.consensus_control("sgd", decjax.ring(4), target=1.0), TypeError, "tx"),
        (lambda: decjax.algorithms.reference_target([1, 2], [1.0]), ValueError, "same"),
        (
            lambda: decjax.gossip.accelerated_mix(
                decjax.ring(4), jnp.ones(4), rounds=0, momentum=0.1
            ),
            ValueError,
            "rounds",
        ),
        (lambda: decjax.topology.lazy(decjax.ring(4), 0.0), ValueError, "kappa"),
    ],
)
def test_constructors_reject_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()
