"""Spectral analysis of topologies (host side, float64 numpy).

These functions read concrete weights; call them outside ``jit``.
"""

from __future__ import annotations

import numpy as np

from decjax._validation import check_choice, check_in_range
from decjax.topology.base import Topology
from decjax.topology.spectrum import DENSE_LIMIT, circulant_eigenvalues, sparse_matrices


def _check_topology(topology) -> None:
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    if topology.batch_shape:
        raise ValueError("topology must be a single topology, not a stack; index it first")


def period_product(topology: Topology, start: int = 0) -> np.ndarray:
    """``W_{start+T-1} ... W_{start+1} W_start``: the map of one whole period, float64.

    Examples:
      >>> import numpy as np, decjax
      >>> p = decjax.topology.period_product(decjax.one_peer_exponential(8))
      >>> bool(np.allclose(p, 1 / 8))
      True
    """
    _check_topology(topology)
    mats = topology.numpy_matrices()
    product = np.eye(topology.n)
    for t in range(topology.period):
        product = mats[(start + t) % topology.period] @ product
    return product


def spectral_gap(topology: Topology) -> float:
    r"""Spectral gap ``1 - max |lambda|`` over the eigenvalues other than the one at 1.

    For a static topology this is the usual ``1 - max(|lambda_2|, |lambda_n|)``
    of ``W``. **For a time-varying topology it is the gap of the product over
    one period** (:func:`period_product`), so it measures contraction per
    period, not per step. A disconnected topology (``solo``) has gap 0; the
    complete graph (and the one-peer exponential graph's period when
    ``n = 2^tau``) has gap 1. **For a random topology** (a fresh ``W_t`` per
    step: epidemic, random s-out, EquiDyn) it is ``1 - sqrt(rho)`` with
    ``rho = sup_{e ⟂ 1} E||W_t e||^2 / ||e||^2`` the mean-square contraction of
    one step, in closed form over the law (``topology.contraction()``). **For a
    push-sum digraph** (column- but not row-stochastic, :attr:`Topology.push`)
    it is the same ``1 - |lambda_2|`` of ``W``: the geometric rate at which
    push-sum's numerators and weights approach ``W``'s stationary direction,
    hence at which the de-biased ratios reach the average; ``W`` itself does
    not average, so it is not a rate of plain gossip there.

    Examples:
      >>> import decjax
      >>> round(decjax.spectral_gap(decjax.exponential(16)), 6)  # 2 / (1 + log2 16)
      0.4
    """
    _check_topology(topology)
    if topology.n == 1:
        return 1.0
    contraction = topology.expected_contraction()
    if contraction is not None:  # a random law: its mean-square contraction
        return float(1.0 - np.sqrt(contraction))
    lam = circulant_eigenvalues(topology)
    if lam is not None:  # closed form, O(k n): mode 0 is the consensus eigenvalue 1
        return float(1.0 - np.max(np.abs(np.prod(lam, axis=0)[1:])))
    if topology.n > DENSE_LIMIT and topology.period == 1:
        gap = _sparse_gap(topology)
        if gap is not None:
            return gap
    p = period_product(topology)
    if np.allclose(p, p.T, atol=1e-12):
        eig = np.linalg.eigvalsh(p)
    else:
        eig = np.linalg.eigvals(p)
    rest = np.delete(eig, np.argmin(np.abs(eig - 1.0)))
    return float(1.0 - np.max(np.abs(rest)))


def _sparse_gap(topology: Topology) -> float | None:
    """``1 - |lambda_2|`` of a large static symmetric sparse ``W`` (ARPACK); None if it fails."""
    import scipy.sparse.linalg

    (w,) = sparse_matrices(topology)
    if abs(w - w.T).max() > 1e-6:
        return None
    try:
        eig = scipy.sparse.linalg.eigsh(w, k=2, which="LM", return_eigenvectors=False, tol=1e-10)
    except scipy.sparse.linalg.ArpackNoConvergence:
        return None
    rest = np.delete(eig, np.argmin(np.abs(eig - 1.0)))
    return float(1.0 - np.max(np.abs(rest)))


def _circulant_variance(lam: np.ndarray, gamma: float) -> np.ndarray:
    """Per-phase variance of a circulant topology's random walk, from its ``(T, n)`` eigenvalues.

    In the Fourier basis every ``W_t - J`` is diagonal (mode 0 removed: that is
    the consensus direction, handled exactly), so the series of
    :func:`effective_neighbors` is a scalar geometric series per mode, and
    every worker has the same variance (the graph looks alike from each node).
    """
    period, n = lam.shape
    centred = np.abs(lam[:, 1:]) ** 2  # |mu_{t,j}|^2 for j != 0
    whole = np.prod(centred, axis=0)  # one period, any starting phase (they commute)
    series = 1.0 / (1.0 - gamma**period * whole)
    variances = []
    for s in range(period):
        total, a = np.zeros(n - 1), np.ones(n - 1)
        for r in range(period):
            a = a * centred[(s - r) % period]
            total = total + gamma**r * a * series
        variances.append(total.sum() / n + 1.0 / (n * (1.0 - gamma)))
    return np.asarray(variances)


def _stationary_series(mats: list[np.ndarray], factor: float, tol: float = 1e-16) -> np.ndarray:
    """``S = sum_q factor^q M^q (M^q)^T`` for ``M`` the product ``mats`` (doubling)."""
    n = mats[0].shape[0]
    m = np.eye(n)
    for w in mats:
        m = w @ m
    m = np.sqrt(factor) * m
    s = np.eye(n)
    for _ in range(200):
        s = s + m @ s @ m.T
        m = m @ m
        if np.max(np.abs(m)) ** 2 < tol:
            return s
    raise ValueError(
        "the random walk does not reach a stationary variance (gamma too close to 1, or "
        "the matrices are not doubly stochastic)"
    )


def effective_neighbors(topology: Topology, gamma: float, *, mode: str = "mean") -> float:
    r"""Effective number of neighbours :math:`n_W(\gamma)` (Vogels, Hendrikx & Jaggi, 2022).

    Consider the random walk :math:`x_{t+1} = W_t(\sqrt{\gamma}\, x_t + \xi_t)` with
    i.i.d. unit-variance noise :math:`\xi_t \in \mathbb{R}^n`. Alone (``W = I``)
    a worker's stationary variance is :math:`1/(1-\gamma)`; with gossip it is

    .. math::

       v = \sum_{t \ge 1} \gamma^{t-1} \tfrac{1}{n} \lVert W_t \cdots W_1 \rVert_F^2,
       \qquad n_W(\gamma) = \frac{1/(1-\gamma)}{v},

    the number of workers whose noise is effectively averaged when noise
    persists for about :math:`1/(1-\gamma)` steps. Variance is measured right
    after a gossip step, so the shortest product has one matrix: then
    ``complete(n)`` gives exactly ``n`` and ``solo(n)`` exactly 1.

    For a static symmetric ``W`` the closed form through its eigenvalues
    :math:`\lambda_k` is :math:`v = \frac1n \sum_k \lambda_k^2 / (1 - \gamma\lambda_k^2)`.
    Otherwise (directed or time-varying graphs) the series is summed exactly
    per phase of the period (a discrete Lyapunov equation solved by doubling),
    and the variance is averaged over the ``T`` phases. For a random topology
    (a fresh ``W_t`` per step) the expectation over the law is taken in closed
    form (``topology.stationary_variance``); every worker is alike.

    Args:
      topology: a (possibly time-varying) doubly stochastic topology.
      gamma: the noise persistence, in ``[0, 1)``.
      mode: ``"mean"`` averages the variance over workers (and phases);
        ``"worst"`` takes the worker (and phase) with the largest variance.

    Returns:
      :math:`n_W(\gamma)`, between 1 and ``n``.

    Examples:
      >>> import decjax
      >>> round(decjax.effective_neighbors(decjax.complete(16), 0.9), 6)
      16.0

    References:
      Vogels, Hendrikx, Jaggi. *Beyond spectral gap: the role of the topology in
      decentralized learning*, NeurIPS 2022 / JMLR (arXiv:2301.02151).
    """
    _check_topology(topology)
    check_in_range("gamma", gamma, 0.0, 1.0, closed="left")
    check_choice("mode", mode, ("mean", "worst"))
    if not topology.row_stochastic:
        raise ValueError(
            f"effective_neighbors measures averaging gossip (rows summing to one); "
            f"{topology.name} is not row-stochastic (a push-sum graph mixes numerators and "
            "weights, whose ratio this variance does not describe)"
        )
    expected = topology.expected_variance(gamma)
    if expected is not None:  # a random law: the expectation over it
        return float(1.0 / ((1.0 - gamma) * expected))
    lam = circulant_eigenvalues(topology) if topology.n > 1 else None
    if lam is not None:
        v = _circulant_variance(lam, gamma)
        v = v.mean() if mode == "mean" else v.max()
        return float(1.0 / ((1.0 - gamma) * v))
    variances = np.asarray(_matrix_variances(list(topology.numpy_matrices()), gamma))
    v = variances.mean() if mode == "mean" else variances.max()
    return float(1.0 / ((1.0 - gamma) * v))


def _matrix_variances(mats: list[np.ndarray], gamma: float) -> list:
    """Per-phase, per-worker stationary variances of the walk over one period's matrices."""
    period, n = len(mats), mats[0].shape[0]
    if period == 1 and np.allclose(mats[0], mats[0].T, atol=1e-12):
        # eigenpairs of W - J: the consensus direction (eigenvalue 1 of W) is
        # handled exactly by the 1 / (n (1 - gamma)) term, so float32 weights whose
        # rows sum to 1 +- 1e-8 cannot push an eigenvalue past 1 as gamma -> 1
        lam, q = np.linalg.eigh(mats[0] - 1.0 / n)
        variances = [(q**2) @ (lam**2 / (1.0 - gamma * lam**2)) + 1.0 / (n * (1.0 - gamma))]
    else:
        # For doubly stochastic W_t the products split as P = J + (W_t - J)...(W_s - J)
        # with orthogonal parts, so the consensus direction contributes exactly
        # 1 / (n (1 - gamma)) and the series runs on the centred matrices, whose
        # spectral radius is below 1 (no blow-up from the eigenvalue at 1).
        mats = [w - 1.0 / n for w in mats]
        # S_u: series over whole periods ending at step u (products of T matrices).
        series = {}
        for u in range(period):
            window = [mats[(u - period + 1 + i) % period] for i in range(period)]
            series[u] = _stationary_series(window, gamma**period)
        variances = []
        for s in range(period):
            cov = np.zeros_like(mats[0])
            a = np.eye(n)
            for r in range(period):  # a = W_s ... W_{s-r} (centred)
                a = a @ mats[(s - r) % period]
                cov += gamma**r * a @ series[(s - r - 1) % period] @ a.T
            variances.append(np.diag(cov) + 1.0 / (n * (1.0 - gamma)))
    return variances
