"""Eigenvalues without dense matrices: closed forms for circulant graphs, sparse matrices otherwise.

A circulant matrix ``W[i, (i + o) mod n] = w_o`` is diagonalised by the
Fourier basis ``v_i = exp(2 pi i i j / n)``, with eigenvalues (``j = 0, ..., n - 1``)

.. math::  \\lambda_j = 1 + \\sum_{o \\ne 0} w_o (e^{2\\pi i o j / n} - 1)

and all circulant matrices share that basis, so the matrices of a
time-varying circulant topology (the one-peer exponential graph) commute and
their period product has eigenvalues :math:`\\prod_t \\lambda_{t,j}`. This
makes spectral analysis of rings and exponential graphs ``O(k n)`` in time and
memory, for any ``n`` (a ring of 65,536 workers in milliseconds, where the
dense eigensolver needs minutes and 32 GB). Neighbour lists whose offsets and
weights are the same in every row (a ring stored as a sparse or faulted
topology) are recognised as circulant too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from decjax.topology.base import Topology

if TYPE_CHECKING:
    import scipy.sparse

DENSE_LIMIT = 2048  # above this, analysis avoids forming (n, n) matrices where it can


def _check(topology) -> None:
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if topology.batch_shape:
        raise ValueError("topology must be a single topology, not a stack; index it first")


def circulant_eigenvalues(topology: Topology) -> np.ndarray | None:
    """``(T, n)`` complex eigenvalues of each ``W_t`` if the topology is circulant, else None.

    Faults are ignored (the base graph is analysed), as everywhere in analysis.
    Each kind knows its closed form (``Topology.circulant_eigenvalues``).

    Examples:
      >>> import numpy as np, decjax
      >>> lam = decjax.topology.spectrum.circulant_eigenvalues(decjax.ring(4))
      >>> np.round(lam.real, 6).tolist()
      [[1.0, 0.333333, -0.333333, 0.333333]]
    """
    _check(topology)
    return topology.circulant_eigenvalues()


def sparse_matrices(topology: Topology) -> list[scipy.sparse.csr_matrix]:
    """Each ``W_t`` as a scipy CSR matrix, built from neighbour lists (``O(k n)`` memory)."""
    _check(topology)
    return topology.scipy_matrices()


def is_symmetric(topology: Topology, atol: float = 1e-6) -> bool:
    """Every ``W_t`` symmetric (a circulant one iff its eigenvalues are real; else on sparse
    matrices)."""
    _check(topology)
    lam = circulant_eigenvalues(topology)
    if lam is not None:
        return bool(np.max(np.abs(lam.imag)) <= atol)
    for m in sparse_matrices(topology):
        diff = abs(m - m.T)
        if diff.nnz and diff.max() > atol:
            return False
    return True
