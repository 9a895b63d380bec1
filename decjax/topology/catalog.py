"""Every topology by name, with defaults that fit any ``n`` (for CLIs, sweeps and tests)."""

from __future__ import annotations

import math

import jax

from decjax._validation import check_choice, check_int
from decjax.topology.base import Topology
from decjax.topology.circulant import complete, exponential, one_peer_exponential, ring, solo
from decjax.topology.graphs import erdos_renyi, grid, hypercube, random_matching, star, torus


def _factor(name: str, n: int) -> tuple[int, int]:
    """``rows * cols = n`` with ``rows`` the largest divisor ``<= sqrt(n)``, at least 2.

    A prime ``n`` has only ``1 x n``, which is a ring (torus) or a path (grid),
    not a 2-D graph: refused rather than silently renamed.
    """
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    if rows == 1 and n > 1:
        raise ValueError(
            f"{name} needs n = rows x cols with rows, cols >= 2, but n={n} has no such "
            f"factorization (the only shape, 1x{n}, is not 2-D); choose another n, or build "
            f"decjax.topology.{name}(1, {n}) explicitly"
        )
    return rows, n // rows


BUILDERS = {
    "ring": lambda n, key: ring(n),
    "exponential": lambda n, key: exponential(n),
    "one_peer_exponential": lambda n, key: one_peer_exponential(n),
    "complete": lambda n, key: complete(n),
    "solo": lambda n, key: solo(n),
    "star": lambda n, key: star(n),
    "hypercube": lambda n, key: hypercube(n),
    "torus": lambda n, key: torus(*_factor("torus", n)),
    "grid": lambda n, key: grid(*_factor("grid", n)),
    "erdos_renyi": lambda n, key: erdos_renyi(n, min(1.0, 2 * math.log(max(n, 2)) / n), key=key),
    "random_matching": lambda n, key: random_matching(n, key=key),
}
NAMES = tuple(BUILDERS)


def by_name(name: str, n: int, *, key=None) -> Topology:
    """Build a topology from its name with sensible defaults.

    ``torus``/``grid`` use the most square factorization of ``n`` (a prime
    ``n`` is refused: its only shape is ``1 x n``);
    ``erdos_renyi`` uses ``p = 2 ln(n) / n``; random graphs draw from ``key``
    (default ``jax.random.key(0)``).

    Examples:
      >>> import decjax
      >>> decjax.topology.by_name("torus", 12)
      Topology(torus3x4, n=12, representation='sparse')
    """
    check_choice("name", name, NAMES)
    n = check_int("n", n, minimum=1)
    return BUILDERS[name](n, jax.random.key(0) if key is None else key)
