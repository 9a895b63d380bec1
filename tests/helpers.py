"""Test helpers shared across test modules (independent numpy references)."""

import numpy as np

import decjax


def all_topologies(n: int):
    """One instance of every catalogued topology that exists for ``n`` workers."""
    out = []
    for name in decjax.topology.NAMES:
        if name == "hypercube" and n & (n - 1):
            continue
        if name in ("torus", "grid") and all(n % d for d in range(2, n)):
            continue  # a prime n has no 2-D shape
        out.append(decjax.topology.by_name(name, n))
    return out


def dense_reference(topology, x, step: int, rounds: int = 1) -> np.ndarray:
    """Float64 numpy ``W_{t+k-1} ... W_t x`` from the dense matrices."""
    mats = topology.numpy_matrices()
    y = np.asarray(x, dtype=np.float64)
    for r in range(rounds):
        w = mats[(step + r) % topology.period]
        y = np.tensordot(w, y, axes=(1, 0))
    return y
