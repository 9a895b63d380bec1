r"""Pairwise network differential privacy of noisy gossip (Muffliato: Cyffers, Even, Bellet and
Massoulié, NeurIPS 2022, arXiv 2206.05091).

Each node :math:`u` adds Gaussian noise of standard deviation :math:`\sigma` to its
value (sensitivity :math:`\Delta`) once, then the nodes gossip :math:`x^{t+1} = W_t x^t`
for ``steps`` rounds; node :math:`v` sees the messages of its neighbours, :math:`x^t_w`
for :math:`w \in N(v)` and :math:`t < T`. Muffliato's Theorem 1 bounds what
:math:`v` learns about :math:`u` in Rényi DP of order :math:`\alpha`:

.. math:: \varepsilon^T_{u \to v}(\alpha) \le \frac{\alpha \Delta^2}{2 \sigma^2}
   \sum_{t=0}^{T-1} \sum_{w \in N(v)} \frac{(P_t)_{wu}^2}{\lVert P_t e_u \rVert^2},
   \qquad P_t = W_{t-1} \cdots W_0 .

Everything :math:`v` sees is computed from the noisy values :math:`x^0`, so the loss never
exceeds the local (and, for the complete graph, the central) Gaussian mechanism's
:math:`\alpha \Delta^2 / (2\sigma^2)`: :func:`pairwise_epsilon` returns the smaller of
the two, as the authors' code does for random graphs (``ERsampled.py``).
"""

from __future__ import annotations

import math

import numpy as np

from decjax._validation import check_in_range, check_int, check_positive
from decjax.privacy._graph import check_topology, fixed_matrices, links, powers
from decjax.topology import Topology


def pairwise_epsilon(
    topology: Topology,
    steps: int,
    sigma: float,
    alpha: float,
    *,
    sensitivity: float = 1.0,
    momentum: float = 0.0,
) -> np.ndarray:
    """``(n, n)``: entry ``[u, v]`` bounds node ``v``'s Rényi-DP loss of order ``alpha`` about
    node ``u``'s value after ``steps`` rounds of gossip on ``topology`` (the diagonal is
    ``nan``: a node knows its own value). With ``momentum`` :math:`\\eta_g > 0` the rounds
    are accelerated (Chebyshev / heavy-ball) gossip, Muffliato's accelerated averaging:
    the messages of round :math:`t` are :math:`P_t x^0` with :math:`P_{-1} = P_0 = I`,
    :math:`P_{t+1} = (1 + \\eta_g) W_t P_t - \\eta_g P_{t-1}`
    (:func:`decjax.gossip.accelerated_mix`), in place of :math:`W^t`.

    Examples:
      >>> import decjax
      >>> eps = pairwise_epsilon(decjax.complete(8), 10, sigma=1.0, alpha=2.0)
      >>> float(eps[0, 1])  # the complete graph: the central value alpha / (2 sigma^2)
      1.0
    """
    local = local_epsilon(sigma, alpha, sensitivity)
    total = np.zeros((topology.n, topology.n))
    for power, w in _powers(topology, steps, momentum):
        total += _seen(power, w)
    out = np.minimum(local * total, local)
    np.fill_diagonal(out, np.nan)
    return out


def gd_pairwise_epsilon(
    topology: Topology,
    rounds: int,
    steps: int,
    noise_multiplier: float,
    delta: float,
    *,
    momentum: float = 0.0,
) -> np.ndarray:
    """``(n, n)`` ``(epsilon, delta)``-DP from ``u`` to ``v`` after ``steps`` steps of
    Muffliato-GD: each step every worker's gradient gets Gaussian noise of
    ``noise_multiplier`` times its sensitivity, then ``rounds`` gossip rounds (accelerated
    with ``momentum``, as ``dpsgd(..., gossip_momentum=)`` runs them). The steps'
    Rényi DP (:func:`pairwise_epsilon`, linear in the order) add up and convert at the best
    order in closed form, :math:`c + 2\\sqrt{c \\log(1/\\delta)}` with
    :math:`c = T m_{uv} / (2\\sigma^2)`; with :math:`m_{uv} = 1` (a neighbour, or the
    complete graph) it is the local Gaussian mechanism's RDP bound. No amplification by
    subsampling is counted.

    The composition is step by step: each step's bound treats the models at the start
    of the step as known to the observer, so what later messages reveal about earlier
    steps' data through those models is not counted (an exact analysis of that leakage,
    e.g. Koskela and Kulkarni 2025, arXiv 2505.19969, is not implemented). Read it as
    the network amplification of one step, repeated."""
    check_int("steps", steps, minimum=1)
    check_positive("noise_multiplier", noise_multiplier)
    check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    share = pairwise_epsilon(topology, rounds, sigma=1.0, alpha=2.0, momentum=momentum)
    c = steps * share / (2 * noise_multiplier**2)
    return c + 2 * np.sqrt(c * math.log(1 / delta))


def local_epsilon(sigma: float, alpha: float, sensitivity: float = 1.0) -> float:
    """The Gaussian mechanism's Rényi DP of order ``alpha``:
    :math:`\\alpha\\Delta^2/(2\\sigma^2)`."""
    check_positive("sigma", sigma)
    check_in_range("alpha", alpha, 1.0, math.inf, closed="neither")
    check_positive("sensitivity", sensitivity)
    return alpha * sensitivity**2 / (2 * sigma**2)


def rdp_to_dp(epsilon_rdp, alpha: float, delta: float):
    """An ``(alpha, epsilon_rdp)``-RDP guarantee as ``(epsilon, delta)``-DP (Mironov 2017,
    Proposition 3): :math:`\\varepsilon + \\log(1/\\delta) / (\\alpha - 1)`."""
    check_in_range("alpha", alpha, 1.0, math.inf, closed="neither")
    check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    return np.asarray(epsilon_rdp) + math.log(1 / delta) / (alpha - 1)


def by_distance(matrix: np.ndarray, topology: Topology) -> dict[int, float]:
    """The mean of ``matrix[u, v]`` over the pairs at each graph distance ``k >= 1`` (hops on
    ``topology``'s communication graph at step 0)."""
    check_topology(topology)
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (topology.n, topology.n):
        raise ValueError(
            f"matrix must be ({topology.n}, {topology.n}) for {topology.name}, got {matrix.shape}"
        )
    import networkx as nx  # imported here: `import decjax` leaves networkx for later

    graph = nx.from_numpy_array(links(topology.numpy_matrices()[0]))
    distance = dict(nx.all_pairs_shortest_path_length(graph))
    groups: dict[int, list[float]] = {}
    for u in range(topology.n):
        for v, k in distance[u].items():
            if k > 0:
                groups.setdefault(k, []).append(float(matrix[u, v]))
    return {k: float(np.mean(values)) for k, values in sorted(groups.items())}


def _powers(topology: Topology, steps: int, momentum: float = 0.0):
    """``(P_t, W_t)`` for ``t < steps`` (float64; ``W_t``'s links carry the round's
    messages), refusing what the bound does not cover."""
    steps = check_int("steps", steps, minimum=1)
    matrices = fixed_matrices(
        topology, "pairwise_epsilon", "Muffliato's bound here is for fixed matrices"
    )
    if not all(np.allclose(w, w.T, atol=1e-12) for w in matrices):
        raise ValueError(
            f"pairwise_epsilon: {topology.name}'s W is not symmetric, and Muffliato's bound "
            "is for symmetric gossip matrices: give an undirected topology"
        )
    return powers(matrices, steps, momentum)


def _seen(power: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[u, v]``: :math:`\\sum_{w \\in N(v)} (P)_{wu}^2 / \\lVert P e_u \\rVert^2` for one round,
    ``N(v)`` the neighbours of ``v`` in the round's matrix ``w``."""
    share = power**2 / np.sum(power**2, axis=0, keepdims=True)  # [w, u]
    return (links(w) @ share).T
