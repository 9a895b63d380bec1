"""Every topology by name, with defaults that fit any ``n`` (for CLIs, sweeps and tests)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax

from decjax._bits import ceil_log2
from decjax._validation import check_choice, check_int
from decjax.topology._epidemic import epidemic, random_out
from decjax.topology.base import Topology
from decjax.topology.circulant import complete, exponential, one_peer_exponential, ring, solo
from decjax.topology.directed import (
    directed_exponential,
    directed_ring,
    one_peer_directed_exponential,
)
from decjax.topology.equitopo import equi_dyn, equi_static, ou_equi_dyn
from decjax.topology.finite_time import base_graph
from decjax.topology.graphs import erdos_renyi, grid, hypercube, random_matching, star, torus
from decjax.topology.trees import binary_tree, chain, double_binary_trees


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


def _peers(peers: int | None, default: int) -> int:
    """The ``peers`` argument (validated), or the name's default."""
    if peers is None:
        return default
    return check_int("peers", peers, minimum=1)


BUILDERS: dict[str, Callable[..., Topology]] = {
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
    "base_graph": lambda n, key, peers=None: base_graph(n, _peers(peers, 1)),
    "equi_static": lambda n, key, peers=None: equi_static(
        n, None if peers is None else _peers(peers, 1), key=key
    ),
    "directed_ring": lambda n, key: directed_ring(n),
    "directed_exponential": lambda n, key: directed_exponential(n),
    "one_peer_directed_exponential": lambda n, key: one_peer_directed_exponential(n),
    # fresh random graphs at every step (the "random" kind)
    "equi_dyn": lambda n, key: equi_dyn(n, key=key),
    "ou_equi_dyn": lambda n, key: ou_equi_dyn(n, key=key),
    "epidemic": lambda n, key, peers=None: epidemic(
        n, _peers(peers, min(n - 1, max(1, ceil_log2(n)))), key=key
    ),
    "random_out": lambda n, key, peers=None: random_out(n, _peers(peers, 1), key=key),
    # spanning trees (what RelaySGD relays over)
    "chain": lambda n, key: chain(n),
    "binary_tree": lambda n, key: binary_tree(n),
    "double_binary_trees": lambda n, key: double_binary_trees(n),
}
# the spanning trees (what decjax.algorithms.relaysgd relays over)
TREES = ("chain", "binary_tree", "double_binary_trees")
# names whose number of peers per step can be chosen (``by_name(..., peers=)``)
WITH_PEERS = ("base_graph", "equi_static", "epidemic", "random_out")
NAMES = tuple(BUILDERS)


def by_name(name: str, n: int, *, key=None, peers: int | None = None) -> Topology:
    """Build a topology from its name with sensible defaults.

    ``torus``/``grid`` use the most square factorization of ``n`` (a prime
    ``n`` is refused: its only shape is ``1 x n``);
    ``erdos_renyi`` uses ``p = 2 ln(n) / n``; ``base_graph`` ``k = 1``;
    ``epidemic`` ``s = ceil(log2 n)`` peers; ``random_out`` one peer (SGP's
    one-peer graphs); ``equi_static`` ``M = ceil(2 ln n)`` offsets; random
    graphs draw from ``key`` (default ``jax.random.key(0)``). ``equi_dyn``,
    ``ou_equi_dyn``, ``epidemic`` and ``random_out`` draw a fresh graph at every step and
    need ``n >= 2``. ``peers`` overrides the number of peers per step of
    ``base_graph`` (``k``), ``epidemic`` and ``random_out`` (``s``) and the
    number of offsets of ``equi_static`` (``M``).

    Examples:
      >>> import decjax
      >>> decjax.topology.by_name("torus", 12)
      Topology(torus3x4, n=12, representation='sparse')
    """
    check_choice("name", name, NAMES)
    n = check_int("n", n, minimum=1)
    key = jax.random.key(0) if key is None else key
    if peers is None:
        return BUILDERS[name](n, key)
    if name not in WITH_PEERS:
        raise ValueError(f"peers applies to {', '.join(WITH_PEERS)}; not to {name}")
    return BUILDERS[name](n, key, peers)
