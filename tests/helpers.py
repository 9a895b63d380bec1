"""Test helpers shared across test modules (independent numpy references)."""

import re

import numpy as np

import decjax


def all_topologies(n: int):
    """One instance of every catalogued topology that exists for ``n`` workers."""
    out = []
    for name in decjax.topology.NAMES:
        if name == "hypercube" and n & (n - 1):
            continue
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


def loop_copies(compiled, shape) -> int:
    """Copies of float32 arrays of ``shape`` inside a compiled program's loops.

    ``compiled`` is ``jax.jit(f).lower(...).compile()``; everything before the
    entry computation is a called computation (loop bodies, fusions).
    """
    loops = compiled.as_text().split("\nENTRY")[0]
    dims = ",".join(map(str, shape))
    return len(re.findall(rf"= f32\[{dims}\]\{{[^}}]*\}} copy\(", loops))
