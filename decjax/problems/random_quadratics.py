"""Random least-squares problems of RelaySum's experiments: curvature in [mu, L], exact zeta^2."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax._random import numpy_rng
from decjax._validation import check_int, check_nonnegative, check_positive


class LeastSquares(NamedTuple):
    r"""Worker ``i`` minimizes :math:`f_i(x) = \frac12 \lVert A_i x - b_i \rVert^2`.

    The global objective :math:`f = \frac1n \sum_i f_i` has Hessian
    :math:`H = \frac1n \sum_i A_i^\top A_i` and minimizer :attr:`optimum`.
    ``data = (A, b)`` is the full-batch "dataset" for :func:`decjax.simulate`.
    """

    A: jax.Array  # (n, d, d)
    b: jax.Array  # (n, d)

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def data(self):
        return (self.A, self.b)

    def _numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.A, np.float64), np.asarray(self.b, np.float64)

    @property
    def optimum(self) -> np.ndarray:
        """The minimizer of ``f`` (float64, on the host)."""
        A, b = self._numpy()
        return _optimum(A, b)

    @property
    def zeta2(self) -> float:
        r""":math:`\zeta^2 = \frac1n\sum_i \lVert\nabla f_i(x^\star)\rVert^2` (float64)."""
        A, b = self._numpy()
        return _zeta2(A, b, _optimum(A, b))

    @staticmethod
    def loss(params, batch) -> jax.Array:
        """One worker's loss; ``batch = (A_i, b_i)``."""
        A, b = batch
        residual = A @ params - b
        return 0.5 * jnp.sum(residual**2)

    def init_params(self) -> jax.Array:
        """Stacked zeros ``(n, d)``: the authors' start (the optimum is at distance ``r0``)."""
        return jnp.zeros(self.b.shape, self.b.dtype)

    def suboptimality(self, params) -> jax.Array:
        r""":math:`f(x) - f(x^\star) = \frac12 (x - x^\star)^\top H (x - x^\star)` at one
        (unstacked) point, in this quadratic form so that it stays accurate far below the
        float32 resolution of :math:`f` itself."""
        hessian = jnp.einsum("nij,nik->jk", self.A, self.A) / self.n
        gap = params - jnp.asarray(self.optimum, params.dtype)
        return 0.5 * gap @ hessian @ gap


def _optimum(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    AA, bb = A.reshape(-1, A.shape[-1]), b.reshape(-1)
    return np.linalg.solve(AA.T @ AA, AA.T @ bb)


def _zeta2(A: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    grads = np.einsum("nji,nj->ni", A, np.einsum("nij,j->ni", A, x) - b)
    return float(np.mean(np.sum(grads**2, axis=1)))


def least_squares(
    n: int,
    d: int,
    *,
    key: Any,
    zeta2: float,
    mu: float = 0.5,
    smoothness: float = 1.0,
    r0: float = 1.0,
    dtype: Any = jnp.float32,
) -> LeastSquares:
    r"""Random least squares of RelaySum's quadratic experiments (their ``random_quadratics.py``).

    Each :math:`A_i = U_i\,\mathrm{diag}(\mathrm{linspace}(\mu, L, d))\,V_i^\top` with
    random rotations (every :math:`f_i` is :math:`\mu^2`-strongly convex and
    :math:`L^2`-smooth); the workers' optima are moved apart along random directions by a
    common scale chosen so that :math:`\zeta^2` is ``zeta2`` (it grows with the square of
    the scale: found in closed form in float64, where the authors bisect to 1e-5); the
    global optimum then sits at distance ``r0`` from 0, where :meth:`init_params` starts.

    Their gradient is :math:`A_i^\top(A_i x - b_i)`, i.e. of :math:`\frac12\lVert A_i x -
    b_i\rVert^2` (this :attr:`~LeastSquares.loss`), and their error is
    :math:`\frac1n\sum_i \lVert A_i \bar x - b_i\rVert^2 - f^\star`: twice
    :meth:`~LeastSquares.suboptimality`.

    Examples:
      >>> import decjax
      >>> q = decjax.problems.least_squares(32, 10, key=0, zeta2=0.1)
      >>> round(q.zeta2, 6), q.A.shape
      (0.1, (32, 10, 10))
    """
    n = check_int("n", n, minimum=2)
    d = check_int("d", d, minimum=1)
    check_nonnegative("zeta2", zeta2)
    check_positive("mu", mu)
    check_positive("smoothness", smoothness)
    check_nonnegative("r0", r0)
    if not mu < smoothness:
        raise ValueError(f"mu must be below smoothness, got mu={mu}, smoothness={smoothness}")
    rng = numpy_rng(key)
    spectrum = np.linspace(mu, smoothness, d)
    A = np.empty((n, d, d))
    for i in range(n):
        u, _, vt = np.linalg.svd(rng.normal(size=(d, d)))
        A[i] = u @ np.diag(spectrum) @ vt
    directions = rng.normal(size=(n, d))
    b = np.einsum("nij,nj->ni", A, directions)
    b -= np.einsum("nij,j->ni", A, _optimum(A, b))  # the optimum back at 0: gradients there
    unit = _zeta2(A, b, np.zeros(d))
    b *= np.sqrt(zeta2 / unit) if zeta2 > 0 else 0.0
    target = rng.normal(size=d)
    target *= r0 / np.linalg.norm(target)
    b += np.einsum("nij,j->ni", A, target)
    return LeastSquares(jnp.asarray(A, dtype), jnp.asarray(b, dtype))
