"""Metrics over the honest workers only: Byzantine rows must not enter an average."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax.byzantine.combine import Byzantine


def _honest(tree: Any, byzantine: Byzantine) -> tuple[np.ndarray, Any]:
    if not isinstance(byzantine, Byzantine):
        raise TypeError(f"byzantine must be a decjax.byzantine.Byzantine, got {byzantine!r}")
    n = jax.tree.leaves(tree)[0].shape[0]
    keep = np.flatnonzero(~byzantine.mask(n))
    return keep, jax.tree.map(lambda x: x[keep], tree)


def honest_mean(tree: Any, byzantine: Byzantine) -> Any:
    r"""The honest workers' averaged model :math:`\bar x_H = \frac1{|H|} \sum_{i \in H} x_i`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from decjax import byzantine as byz
      >>> b = byz.Byzantine((2,), byz.SignFlip())
      >>> honest_mean(jnp.array([[1.0], [3.0], [100.0]]), b).tolist()
      [2.0]
    """
    _, honest = _honest(tree, byzantine)
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), honest)


def honest_consensus_distance(tree: Any, byzantine: Byzantine) -> jax.Array:
    r""":math:`\frac1{|H|} \sum_{i \in H} \lVert x_i - \bar x_H \rVert^2` over all leaves.

    Examples:
      >>> import jax.numpy as jnp
      >>> from decjax import byzantine as byz
      >>> b = byz.Byzantine((2,), byz.SignFlip())
      >>> float(honest_consensus_distance(jnp.array([[1.0], [3.0], [100.0]]), b))
      1.0
    """
    keep, honest = _honest(tree, byzantine)
    total = sum(
        jnp.sum((x - jnp.mean(x, axis=0, keepdims=True)) ** 2) for x in jax.tree.leaves(honest)
    )
    return jnp.asarray(total / keep.size)
