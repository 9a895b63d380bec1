"""Heterogeneous quadratics with a known optimum: the honest oracle for decentralized methods."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax._validation import as_key, check_int, check_nonnegative, check_positive


class Quadratics(NamedTuple):
    r"""Worker ``i`` minimizes :math:`f_i(x) = \frac{a_i}{2}\lVert x - b_i\rVert^2`.

    The global objective :math:`f = \frac1n\sum_i f_i` has the unique minimizer
    :math:`x^\star = \sum_i a_i b_i / \sum_i a_i`. With distinct :math:`a_i`
    the local minimizers differ from :math:`x^\star` and from each other, so
    plain D-PSGD keeps a bias while exact methods converge to :math:`x^\star`.

    ``data = (a, b)`` is the full-batch "dataset" stacked over workers, to pass
    to :func:`decjax.simulate` with ``batch_size=None``.
    """

    a: jax.Array  # (n,) curvatures
    b: jax.Array  # (n, dim) local minimizers

    @property
    def n(self) -> int:
        return self.a.shape[0]

    @property
    def data(self):
        return (self.a, self.b)

    @property
    def optimum(self) -> jax.Array:
        return jnp.sum(self.a[:, None] * self.b, axis=0) / jnp.sum(self.a)

    @property
    def zeta2(self) -> jax.Array:
        r""":math:`\zeta^2 = \frac1n \sum_i a_i^2 \lVert x^\star - b_i \rVert^2`: the spread of
        the workers' gradients at the optimum, where the mean gradient is zero (Koloskova
        et al. 2020; :func:`decjax.data.heterogeneity` measures it at any model)."""
        return jnp.mean(self.a**2 * jnp.sum((self.optimum[None] - self.b) ** 2, axis=1))

    def init_params(self) -> jax.Array:
        """Stacked zeros ``(n, dim)``."""
        return jnp.zeros_like(self.b)

    @staticmethod
    def loss(params, batch) -> jax.Array:
        """One worker's loss; ``batch = (a_i, b_i)``."""
        a, b = batch
        return 0.5 * a * jnp.sum((params - b) ** 2)

    def objective(self, params) -> jax.Array:
        """The global objective ``f`` at one (unstacked) point."""
        return jnp.mean(jax.vmap(self.loss, in_axes=(None, 0))(params, self.data))

    def eval_fn(self, params, data=None) -> dict[str, jax.Array]:
        """Metrics of one model: objective gap and squared distance to the optimum."""
        del data
        return {
            "suboptimality": self.objective(params) - self.objective(self.optimum),
            "distance_to_optimum": jnp.sum((params - self.optimum) ** 2),
        }


def quadratics(
    n: int,
    dim: int,
    *,
    key,
    curvature: tuple[float, float] = (0.5, 2.0),
    spread: float = 1.0,
    zeta2: float | None = None,
) -> Quadratics:
    """Random heterogeneous quadratics: ``a_i ~ U(curvature)``, ``b_i ~ N(0, spread^2 I)``.

    With ``zeta2``, the optima are scaled instead so that :attr:`Quadratics.zeta2` is
    ``zeta2`` (``spread`` then unused): :math:`\\zeta^2` grows with the square of the
    scale, so the scale is found in closed form (in float64) and the generator hits the
    target to float32 rounding; ``zeta2=0`` gives one shared optimum.

    Examples:
      >>> import jax, decjax
      >>> q = decjax.problems.quadratics(8, 3, key=jax.random.key(0))
      >>> q.b.shape, q.optimum.shape
      ((8, 3), (3,))
      >>> q = decjax.problems.quadratics(32, 10, key=jax.random.key(0), zeta2=10.0)
      >>> round(float(q.zeta2), 4)
      10.0
    """
    n = check_int("n", n, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    if not isinstance(curvature, tuple | list) or len(curvature) != 2:
        raise TypeError(f"curvature must be a pair (low, high), got {curvature!r}")
    low, high = curvature
    check_positive("curvature[0]", low)
    check_positive("curvature[1]", high)  # finite: a_i ~ U(low, high) in float32
    if not high >= low:
        raise ValueError(f"curvature must be (low, high) with high >= low, got {curvature}")
    check_positive("spread", spread)
    ka, kb = jax.random.split(as_key("key", key))
    a = jax.random.uniform(ka, (n,), minval=low, maxval=high)
    b = spread * jax.random.normal(kb, (n, dim))
    if zeta2 is None:
        return Quadratics(a, b)
    check_nonnegative("zeta2", zeta2)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    centre = (a64[:, None] * b64).sum(0) / a64.sum()
    unit = np.mean(a64**2 * np.sum((centre - b64) ** 2, axis=1))  # zeta2 at scale 1
    if unit == 0 and zeta2 > 0:
        raise ValueError(f"zeta2={zeta2} needs n >= 2 workers with distinct optima, got n={n}")
    scale = np.sqrt(zeta2 / unit) if zeta2 > 0 else 0.0
    return Quadratics(a, jnp.asarray(scale * (b64 - centre) + centre, jnp.float32))
