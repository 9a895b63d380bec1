"""Metrics over the honest workers only: Byzantine rows must not enter an average."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from decjax.byzantine.combine import Byzantine
from decjax.metrics import consensus_distance, worker_mean


def _honest(tree: Any, byzantine: Byzantine) -> np.ndarray:
    """The honest workers' ``(n,)`` mask, for the ``mask=`` of :mod:`decjax.metrics`."""
    if not isinstance(byzantine, Byzantine):
        raise TypeError(f"byzantine must be a decjax.byzantine.Byzantine, got {byzantine!r}")
    return byzantine.honest(jax.tree.leaves(tree)[0].shape[0])


def honest_mean(tree: Any, byzantine: Byzantine) -> Any:
    r"""The honest workers' averaged model :math:`\bar x_H = \frac1{|H|} \sum_{i \in H} x_i`
    (``decjax.metrics.worker_mean`` over the honest workers).

    Examples:
      >>> import jax.numpy as jnp
      >>> from decjax import byzantine as byz
      >>> b = byz.Byzantine((2,), byz.SignFlip())
      >>> honest_mean(jnp.array([[1.0], [3.0], [100.0]]), b).tolist()
      [2.0]
    """
    return worker_mean(tree, _honest(tree, byzantine))


def honest_consensus_distance(tree: Any, byzantine: Byzantine) -> jax.Array:
    r""":math:`\frac1{|H|} \sum_{i \in H} \lVert x_i - \bar x_H \rVert^2` over all leaves
    (``decjax.metrics.consensus_distance`` over the honest workers).

    Examples:
      >>> import jax.numpy as jnp
      >>> from decjax import byzantine as byz
      >>> b = byz.Byzantine((2,), byz.SignFlip())
      >>> float(honest_consensus_distance(jnp.array([[1.0], [3.0], [100.0]]), b))
      1.0
    """
    return consensus_distance(tree, _honest(tree, byzantine))
