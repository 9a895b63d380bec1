"""Validation of mixing weights on the host, before anything is built (numpy, float64)."""

from __future__ import annotations

import math

import numpy as np

from decjax.topology.base import STOCHASTIC_ATOL


def check_matrix_stack(
    name: str,
    stack: np.ndarray,
    *,
    doubly_stochastic: bool = True,
    nonnegative: bool = True,
    connected: bool = True,
) -> None:
    """Validate a ``(T, n, n)`` stack of mixing matrices (host side, numpy)."""
    if not np.all(np.isfinite(stack)):
        raise ValueError(f"{name} must be finite")
    if nonnegative and np.any(stack < 0):
        t, i, j = np.argwhere(stack < 0)[0]
        raise ValueError(
            f"{name} must have non-negative weights; W[{i}, {j}] = {stack[t, i, j]:g}"
            + (f" at step {t}" if stack.shape[0] > 1 else "")
        )
    if doubly_stochastic:
        _check_sums(name, stack.sum(axis=2), "row")
        _check_sums(name, stack.sum(axis=1), "column")
    if connected:
        rows, cols = np.nonzero(np.any(stack != 0, axis=0))
        _check_connected(name, stack.shape[-1], rows, cols, stack.shape[0] > 1)


def check_sparse(name: str, neighbors: np.ndarray, weights: np.ndarray, *, connected=True) -> None:
    """Validate padded neighbour lists ``(T, n, k)`` without forming dense matrices."""
    period, n, _ = neighbors.shape
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} weights must be finite")
    if np.any(weights < 0):
        raise ValueError(f"{name} must have non-negative weights")
    _check_sums(name, weights.sum(axis=2), "row")
    col = np.zeros((period, n))
    for t in range(period):
        np.add.at(col[t], neighbors[t].ravel(), weights[t].ravel())
    _check_sums(name, col, "column")
    if connected:
        mask = weights != 0
        rows = np.broadcast_to(np.arange(n)[None, :, None], neighbors.shape)[mask]
        _check_connected(name, n, rows, neighbors[mask], period > 1)


def check_shift(name: str, n: int, offsets, weights: np.ndarray, *, connected=True) -> None:
    """Validate a circulant topology from its offsets and ``(T, k)`` weights."""
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} weights must be finite (no NaN or inf)")
    if np.any(weights < 0):
        raise ValueError(f"{name} must have non-negative weights")
    _check_sums(name, weights.sum(axis=1, keepdims=True), "row")
    if connected and n > 1:
        pairs = zip(offsets, weights, strict=True)
        used = [o % n for offs, w in pairs for o, x in zip(offs, w, strict=True) if x]
        if math.gcd(n, *used) != 1:
            raise ValueError(
                f"{name} must be connected (or its union over a period); offsets "
                f"{sorted(set(used))} do not generate Z_{n}"
            )


def _check_sums(name: str, sums: np.ndarray, kind: str) -> None:
    bad = np.argwhere(np.abs(sums - 1.0) > STOCHASTIC_ATOL)
    if bad.size:
        t, i = bad[0]
        where = f" at step {t}" if sums.shape[0] > 1 else ""
        raise ValueError(
            f"{name} must be doubly stochastic: every {kind} must sum to 1 "
            f"(tolerance {STOCHASTIC_ATOL:g}), but {kind} {i} sums to {sums[t, i]:.6g}{where}"
        )


def _check_connected(name, n, rows, cols, time_varying) -> None:
    if n <= 1:
        return
    import scipy.sparse.csgraph  # here: scipy.sparse costs `import decjax` 0.14 s

    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, _ = scipy.sparse.csgraph.connected_components(graph, directed=True, connection="strong")
    if count > 1:
        what = "the union of its graphs over one period" if time_varying else "its graph"
        raise ValueError(f"{name} must be connected, but {what} has {count} components")
