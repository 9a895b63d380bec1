"""The graph facts the privacy analyses read: one check, the fixed matrices, links, powers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from decjax._validation import check_in_range
from decjax.topology import Topology


def check_topology(topology) -> None:
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a decjax Topology, got {type(topology).__name__}")


def fixed_matrices(topology: Topology, who: str, why: str) -> np.ndarray:
    """The ``(T, n, n)`` float64 matrices of a deterministic topology; a topology drawn at
    random at every step is refused in one line naming ``who`` and ``why``."""
    check_topology(topology)
    if not topology.has_fixed_matrices():
        raise ValueError(
            f"{who}: {topology.name} draws W_t at random; give a deterministic topology ({why})"
        )
    return topology.numpy_matrices()


def links(w: np.ndarray) -> np.ndarray:
    """The symmetric 0/1 adjacency of ``w``'s off-diagonal non-zeros (a message either way)."""
    adjacent = ((np.abs(w) + np.abs(w.T)) > 0).astype(float)
    np.fill_diagonal(adjacent, 0.0)
    return adjacent


def powers(
    matrices: np.ndarray, steps: int, momentum: float = 0.0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(P_t, W_t)`` for ``t < steps``: :math:`P_0 = I`, :math:`P_{t+1} = W_t P_t` (with
    heavy-ball ``momentum`` :math:`\\eta`: :math:`(1 + \\eta) W_t P_t - \\eta P_{t-1}`)."""
    check_in_range("momentum", momentum, 0.0, 1.0, closed="left")
    power = previous = np.eye(matrices.shape[-1])
    for t in range(steps):
        w = matrices[t % len(matrices)]
        yield power, w
        power, previous = (1 + momentum) * (w @ power) - momentum * previous, power
