"""Differential privacy for decentralized training: the per-example Gaussian mechanism and its
accounting.

``private_gradient`` is DP-SGD's gradient on one worker's minibatch (per-example
clipping to ``clip_norm``, Gaussian noise of ``noise_multiplier * clip_norm / B``
per coordinate); ``epsilon`` accounts for a run of them with ``dp-accounting``.
Named ``privacy`` so that it cannot be confused with ``decjax.dpsgd``
(decentralized parallel SGD).

    >>> import jax, jax.numpy as jnp
    >>> from decjax import privacy
    >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
    >>> batch = (jnp.ones((4, 3)), jnp.zeros(4))
    >>> g = privacy.private_gradient(
    ...     loss, jnp.ones(3), batch, jax.random.key(0), clip_norm=1.0, noise_multiplier=0.0
    ... )
    >>> round(float(jnp.linalg.norm(g)), 6)  # every example's gradient clipped to norm 1
    1.0
"""

from decjax.privacy.accounting import ACCOUNTANTS, epsilon, epsilon_curve, steps_within
from decjax.privacy.audit import knowledge_matrix, reconstructed
from decjax.privacy.clip import Clip
from decjax.privacy.correlated import ZeroSum, decor_variance, zero_sum_noise
from decjax.privacy.mechanism import clip_per_example, per_example_gradients, private_gradient
from decjax.privacy.network import (
    by_distance,
    gd_pairwise_epsilon,
    local_epsilon,
    pairwise_epsilon,
    rdp_to_dp,
)
from decjax.privacy.secure import SecureSums, decode, encode, secure_neighbour_sums

__all__ = [
    "ACCOUNTANTS",
    "Clip",
    "SecureSums",
    "ZeroSum",
    "by_distance",
    "clip_per_example",
    "decode",
    "decor_variance",
    "encode",
    "epsilon",
    "epsilon_curve",
    "gd_pairwise_epsilon",
    "knowledge_matrix",
    "local_epsilon",
    "pairwise_epsilon",
    "per_example_gradients",
    "private_gradient",
    "rdp_to_dp",
    "reconstructed",
    "secure_neighbour_sums",
    "steps_within",
    "zero_sum_noise",
]
