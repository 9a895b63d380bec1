r"""Zero-sum pairwise noise (DECOR: Allouah, Koloskova, El Firdoussi, Jaggi and Guerraoui,
ICML 2024, arXiv 2405.01031).

Every pair of neighbours :math:`\{i, j\}` shares a secret seed and draws, each step, one
Gaussian vector :math:`z_{ij} \sim \mathcal N(0, s^2 I)`; worker :math:`i` adds
:math:`\sum_{j \in N(i)} \pm z_{ij}` (``+`` for the smaller index), so the noises of all
workers sum to zero: the worker mean is unchanged, while each message a neighbour or an
eavesdropper without the pair's seed sees is masked by :math:`\deg(i)\, s^2` of noise per
coordinate. DECOR adds it beside independent noise of variance :math:`\sigma^2`;
:func:`decor_variance` is that variance for an :math:`(\varepsilon, \delta)` target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._validation import check_in_range, check_int, check_nonnegative, check_positive
from decjax.privacy._graph import check_topology, links
from decjax.topology import Topology


@dataclass(frozen=True)
class ZeroSum:
    """The pairs that share noise, and its scale: ``noise_multiplier * clip_norm / B`` per
    coordinate of each pair's vector (the scale of :class:`~decjax.privacy.Clip`'s noise).

    Build it with :meth:`on`: ``ZeroSum.on(decjax.ring(16), 1.0)``.
    """

    n: int
    edges: tuple[tuple[int, int], ...]
    noise_multiplier: float

    def __post_init__(self):
        check_int("ZeroSum.n", self.n, minimum=2)
        check_nonnegative("ZeroSum.noise_multiplier", self.noise_multiplier)
        if not self.edges or any(not 0 <= i < j < self.n for i, j in self.edges):
            raise ValueError("ZeroSum.edges must be pairs i < j of workers, at least one")

    @classmethod
    def on(cls, topology: Topology, noise_multiplier: float) -> ZeroSum:
        """The pairs of ``topology``'s links (its first matrix's off-diagonal non-zeros)."""
        check_topology(topology)
        i, j = np.nonzero(np.triu(links(topology.numpy_matrices()[0]), 1))
        return cls(topology.n, tuple(zip(i.tolist(), j.tolist(), strict=True)), noise_multiplier)

    def degrees(self) -> np.ndarray:
        """``(n,)``: the pairs each worker is in (its noise's variance in units of s^2)."""
        return np.bincount(np.asarray(self.edges).ravel(), minlength=self.n)


def zero_sum_noise(pairs: ZeroSum, like: Any, key: jax.Array, std) -> Any:
    """A tree shaped like ``like`` (stacked over the workers, possibly this device's rows of
    a sharded run): each worker's sum of its pairs' noises, of standard deviation ``std`` per
    pair and coordinate, summing to zero over all the workers."""
    if not isinstance(pairs, ZeroSum):
        raise TypeError(f"pairs must be a decjax.privacy.ZeroSum, got {type(pairs).__name__}")
    check_nonnegative("std", std)
    edges = np.asarray(pairs.edges)
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    out = []
    for x, k in zip(leaves, keys, strict=True):
        z = std * jax.random.normal(k, (len(edges), *x.shape[1:]), x.dtype)
        full = jnp.zeros((pairs.n, *x.shape[1:]), x.dtype)
        full = full.at[edges[:, 0]].add(z).at[edges[:, 1]].add(-z)
        out.append(_axis.local_rows(full))
    return jax.tree.unflatten(treedef, out)


def decor_variance(epsilon: float, delta: float, steps: int, clip_norm: float) -> float:
    r"""The variance :math:`\sigma^2` of the Gaussian noise a worker adds to each of ``steps``
    gradients clipped to ``clip_norm`` for :math:`(\varepsilon, \delta)`-DP (replace-one
    sensitivity :math:`2C`; Rényi DP :math:`T \alpha (2C)^2 / (2\sigma^2)` converted with
    :math:`\log(1/\delta)/(\alpha - 1)` at the best order, in closed form):

    .. math:: \sigma^2 = \frac{2 T C^2}{\big(\sqrt{\log(1/\delta) + \varepsilon}
       - \sqrt{\log(1/\delta)}\big)^2}.

    Examples:
      >>> round(decor_variance(10.0, 1e-5, 1000, 1.0), 2)
      1290.03
    """
    check_positive("epsilon", epsilon)
    check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    steps = check_int("steps", steps, minimum=1)
    check_positive("clip_norm", clip_norm)
    log = math.log(1 / delta)
    return 2 * steps * clip_norm**2 / (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2
