"""EquiTopo (Song et al., NeurIPS 2022): O(1) consensus rate with (almost) constant degree.

Both graphs are built from the basis matrices ``E_u = (1/n) I + ((n-1)/n) P^u``
(``P^u``: worker ``i`` receives from ``i + u``), for offsets ``u`` drawn
uniformly from ``{1, ..., n - 1}``:

* **D-EquiStatic** averages ``M`` sampled bases, ``W = (1/M) sum_m E_{u_m}``: a
  static circulant graph with ``M`` out-neighbours whose consensus rate
  ``||W - 11^T/n||_2`` depends on ``M``, not on ``n`` (``M = O(ln n)`` for a
  fixed rate with high probability). **U-EquiStatic** is its symmetrisation
  ``(W + W^T) / 2``.
* **OD-EquiDyn** uses one freshly sampled basis per step, mixed lazily:
  ``W_t = (1 - eta) I + eta E_{u_t}`` — every worker receives from one peer
  (a directed one-peer graph), a mean-square contraction that does not depend
  on ``n``. **OU-EquiDyn** is its undirected sibling: the pairs ``(i, i + u_t)``
  are matched greedily from a random start, each matched pair averages
  (``W = (1 - eta) I + eta (I/n + (n-1)/n M_t)`` with ``M_t`` the matching),
  the unmatched keep their model. Both draw ``u_t`` from all offsets
  ``{1, ..., n - 1}`` (the authors' "Complete" variants, ``M = n - 1``).
"""

from __future__ import annotations

import math

import numpy as np

from decjax._random import numpy_rng
from decjax._validation import as_key, check_bool, check_in_range, check_int
from decjax.topology.base import Topology
from decjax.topology.circulant import from_offsets
from decjax.topology.kinds import EquiDyn, OUEquiDyn


def equi_static(n: int, degree: int | None = None, *, key=0, undirected: bool = False) -> Topology:
    """D-EquiStatic (or U-EquiStatic) graph: the mean of ``degree`` random bases ``E_u``.

    Args:
      n: number of workers, ``>= 2``.
      degree: the number ``M`` of sampled offsets (out-neighbours before
        duplicates merge; ``2 M`` neighbours when undirected). Default
        ``ceil(2 ln n)``: the rate ``||W - 11^T/n||_2`` then stays bounded as
        ``n`` grows, its median over keys 0..199 measured 0.52 at ``n = 8``,
        0.58 at 16, 0.62 at 64, 0.64 at 256 and 0.66 at 1,024 (the 90th
        percentile 0.70–0.76; U-EquiStatic's median 0.44 at 16 and 0.56 at 256
        over 50 keys; tested).
      key: ``jax.random.key`` or int seed for the offsets. A draw whose offsets
        do not generate ``Z_n`` (``gcd(n, offsets) > 1``: a disconnected graph,
        which the authors' code returns) is redrawn from the same generator, so
        every key gives a connected graph, deterministically.
      undirected: return the symmetric ``(W + W^T) / 2`` (U-EquiStatic).

    Examples:
      >>> import decjax
      >>> topo = decjax.topology.equi_static(64, 8, key=0)
      >>> topo.max_degree() <= 8, round(float(topo.matrix()[0, 0]), 4)
      (True, 0.0156)

    References:
      Song, Li, Jin, Shi, Yan, Yin, Yuan. *Communication-Efficient Topologies
      for Decentralized Learning with O(1) Consensus Rate*, NeurIPS 2022
      (arXiv:2210.07881).
    """
    n = check_int("n", n, minimum=2)
    degree = max(1, math.ceil(2 * math.log(n))) if degree is None else degree
    degree = check_int("degree", degree, minimum=1)
    check_bool("undirected", undirected)
    rng = numpy_rng(as_key("key", key))
    offsets = rng.integers(1, n, size=degree)
    while math.gcd(n, *offsets.tolist()) != 1:  # disconnected: redraw from the same stream
        offsets = rng.integers(1, n, size=degree)
    if undirected:
        offsets = np.concatenate([offsets, -offsets % n])
    unique, counts = np.unique(offsets, return_counts=True)
    weights = (n - 1) / n * counts / len(offsets)
    name = ("u" if undirected else "d") + f"_equi_static(M={degree})"
    return from_offsets(n, [[0, *unique.tolist()]], [[1.0 / n, *weights.tolist()]], name=name)


def equi_dyn(n: int, *, key=0, eta: float = 0.5) -> Topology:
    """OD-EquiDyn: one random basis per step, ``W_t = (1 - eta) I + eta E_{u_t}``.

    (The directed one-peer EquiDyn; :func:`ou_equi_dyn` is the undirected one.)

    Every worker receives from exactly one peer (``i + u_t``, the same random
    offset for all) at each step; the offset is drawn inside ``jit`` from
    ``key`` and the step. Doubly stochastic at every step. Its mean-square
    contraction ``(n alpha - 1) / (n - 1)`` with ``alpha = (1 - b)^2 + b^2``,
    ``b = eta (n - 1) / n`` is about ``(1 - eta)^2 + eta^2`` for every ``n``;
    at ``eta = 1`` (each step nearly a permutation) it tends to 1, hence the
    lazy default ``eta = 1/2``.

    Examples:
      >>> import decjax
      >>> topo = decjax.topology.equi_dyn(16, key=0)
      >>> topo.representation, int((topo.matrix(3) > 0).sum(axis=1).max())
      ('random', 2)

    References:
      Song et al., NeurIPS 2022 (arXiv:2210.07881), OD-EquiDyn.
    """
    n = check_int("n", n, minimum=2)
    check_in_range("eta", eta, 0.0, 1.0, closed="right")
    return EquiDyn.sampled(n, 1, as_key("key", key), eta, f"equi_dyn(eta={eta:g})")


def ou_equi_dyn(n: int, *, key=0, eta: float = 1.0) -> Topology:
    """OU-EquiDyn: one random undirected matching per step, each matched pair averaging.

    At each step a random offset ``u`` in ``{1, ..., n - 1}`` and a random start
    ``s``: scanning ``i = s, s + 1, ...`` (mod ``n``), the pair ``(i, i + u)`` is
    matched when both are still unmatched (Song et al.'s construction); then
    ``W_t = (1 - eta) I + eta (I/n + (n-1)/n M_t)``: a matched worker keeps
    ``1 - eta (n-1)/n`` of its model and takes the rest from its partner, an
    unmatched one keeps its model. Symmetric and doubly stochastic at every step;
    one peer (at most one message each way) per worker and step. Drawn inside
    ``jit`` from ``key`` and the step; the matching costs ``O(n)`` sequential
    work per step. Its mean-square contraction (:func:`decjax.spectral_gap`) is
    exact (the expected matching from the matched pairs of every offset).

    Examples:
      >>> import decjax
      >>> topo = decjax.topology.ou_equi_dyn(8, key=0)
      >>> w = topo.matrix(0)
      >>> bool((w == w.T).all()), int((w > 0).sum(axis=1).max())
      (True, 2)

    References:
      Song et al., NeurIPS 2022 (arXiv:2210.07881), OU-EquiDyn; the authors'
      ``OUEquiDynComplete`` (offsets from all of ``{1, ..., n - 1}``).
    """
    n = check_int("n", n, minimum=2)
    check_in_range("eta", eta, 0.0, 1.0, closed="right")
    name = f"ou_equi_dyn(eta={eta:g})"
    return OUEquiDyn.sampled(n, 1, as_key("key", key), eta, name)
