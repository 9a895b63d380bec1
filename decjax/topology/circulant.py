"""Circulant topologies (gossip by rolls) and the trivial ones (complete, solo).

Worker ``i`` puts weight ``w`` on worker ``(i + o) mod n`` for each offset ``o``.
These need no neighbour lists: gossip is a sum of ``jnp.roll``-s along the
worker axis, and under ``shard_map`` a ``ppermute`` per offset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decjax._bits import ceil_log2
from decjax._validation import check_int
from decjax.topology.base import Topology, as_weights
from decjax.topology.checks import check_shift
from decjax.topology.kinds import Average, Shift


def _distinct_offsets(n: int, offsets) -> tuple[int, ...]:
    """``0`` first, then the other offsets reduced mod ``n``, deduplicated, in order."""
    seen = [0]
    for o in offsets:
        o %= n
        if o not in seen:
            seen.append(o)
    return tuple(seen)


def from_offsets(
    n: int,
    offsets: Sequence[Sequence[int]],
    weights: Sequence[Sequence[float]],
    *,
    name: str = "circulant",
    check_connected: bool = True,
) -> Topology:
    """A (time-varying) circulant topology: ``W_t[i, (i + o_{t,k}) mod n] = w_{t,k}``.

    Args:
      n: number of workers, ``>= 1``.
      offsets: per step, a sequence of ``k`` integer offsets (same ``k`` every step).
      weights: per step, the ``k`` non-negative weights; each step's weights sum to 1.
      name: a label for tables and plots.
      check_connected: require the union of offsets over a period to connect
        the workers (``gcd(n, offsets) == 1``).

    Returns:
      A :class:`~decjax.topology.kinds.Shift` topology (period ``len(offsets)``).

    Examples:
      >>> import decjax
      >>> lazy_ring = decjax.topology.from_offsets(8, [[0, 1, -1]], [[0.5, 0.25, 0.25]])
      >>> float(lazy_ring.matrix()[0, 7])
      0.25
    """
    n = check_int("n", n, minimum=1)
    shape_rule = "offsets and weights must both be (period, k) nested sequences, e.g. [[-1, 0, 1]]"
    try:
        raw = np.asarray(offsets)
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{shape_rule} of integers and of real numbers ({err})") from None
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(f"{shape_rule}; offsets must be integers, got {offsets!r}")
    offs = tuple(tuple(int(o) % n for o in step) for step in raw)
    if not offs or w.ndim != 2 or w.shape != (len(offs), len(offs[0])):
        raise ValueError(
            "offsets and weights must both be (period, k) nested sequences of the same shape, "
            f"got {len(offs)} offset rows and weights of shape {w.shape}"
        )
    if any(len(step) != len(offs[0]) for step in offs):
        raise ValueError("offsets must have the same number k of offsets at every step")
    check_shift("weights", n, offs, w, connected=check_connected)
    return Shift(
        n=n,
        period=len(offs),
        name=name,
        offsets=offs,
        weights=as_weights(w),
    )


def _uniform_circulant(n: int, offsets, name: str) -> Topology:
    offs = _distinct_offsets(n, offsets)
    return from_offsets(n, [offs], [[1.0 / len(offs)] * len(offs)], name=name)


def ring(n: int) -> Topology:
    """Ring: worker ``i`` averages with ``i - 1`` and ``i + 1``, weight 1/3 each (itself too).

    ``W = (I + P + P^T) / 3`` for ``n >= 3`` (Metropolis–Hastings and uniform
    weights coincide on a ring); ``n = 2`` gives weights 1/2, ``n = 1`` the identity.
    Eigenvalues: ``(1 + 2 cos(2 pi k / n)) / 3``.

    Examples:
      >>> import decjax
      >>> decjax.ring(8).matrix()[0, :3].tolist()  # doctest: +ELLIPSIS
      [0.33..., 0.33..., 0.0]
    """
    n = check_int("n", n, minimum=1)
    return _uniform_circulant(n, (1, -1), "ring")


def exponential(n: int) -> Topology:
    """Static exponential graph (Ying et al., 2021).

    Worker ``i`` receives from ``(i + 2^k) mod n`` for every ``2^k <= n - 1``,
    with uniform weight ``1 / (ceil(log2 n) + 1)`` over those and itself. The
    graph is directed (circulant) but doubly stochastic; for even ``n`` its
    spectral gap is ``2 / (1 + ceil(log2 n))``.

    Examples:
      >>> import decjax
      >>> decjax.exponential(8).offsets
      ((0, 1, 2, 4),)

    References:
      Ying, Yuan, Chen, Hu, Pan, Yin. *Exponential Graph is Provably Efficient
      for Decentralized Deep Training*, NeurIPS 2021 (arXiv:2110.13363).
    """
    n = check_int("n", n, minimum=1)
    powers = [1 << k for k in range(ceil_log2(n)) if (1 << k) <= n - 1]
    return _uniform_circulant(n, powers, "exponential")


def one_peer_exponential(n: int) -> Topology:
    """One-peer (time-varying) exponential graph (Ying et al., 2021).

    At step ``t`` every worker averages with exactly one peer:
    ``W_t = (I + P^{2^{t mod tau}}) / 2`` with ``tau = ceil(log2 n)``, i.e.
    ``W_t[i, i] = W_t[i, (i + 2^{t mod tau}) mod n] = 1/2``. When ``n = 2^tau``
    the product of any ``tau`` consecutive matrices is exactly ``11^T / n``
    (exact averaging after ``tau`` steps); for other ``n`` it is not.

    Examples:
      >>> import decjax
      >>> topo = decjax.one_peer_exponential(8)
      >>> topo.period, topo.offsets
      (3, ((0, 1), (0, 2), (0, 4)))

    References:
      Ying et al., NeurIPS 2021 (arXiv:2110.13363).
    """
    n = check_int("n", n, minimum=1)
    tau = ceil_log2(n)
    if tau == 0:
        return from_offsets(1, [[0]], [[1.0]], name="one_peer_exponential")
    offsets = [[0, 1 << t] for t in range(tau)]
    return from_offsets(n, offsets, [[0.5, 0.5]] * tau, name="one_peer_exponential")


def _average(n: int, alphas, name: str, exchange: str = "allreduce") -> Topology:
    return Average(  # the kind checks the exchange
        n=n, period=len(alphas), name=name, weights=as_weights(alphas), exchange=exchange
    )


def complete(n: int, *, exchange: str = "allreduce") -> Topology:
    """Complete graph with uniform weights: ``W = 11^T / n`` (exact averaging every step).

    Gossip is a mean over workers, ``O(n d)``, not a dense matmul.

    Args:
      n: number of workers.
      exchange: how the average is communicated, for byte counts and the clock:
        ``"allreduce"`` (a ring all-reduce, as synchronous data-parallel SGD does:
        ``2 (n - 1) / n`` model copies sent per worker) or ``"all_to_all"`` (every
        worker sends its model to the ``n - 1`` others).

    Examples:
      >>> import decjax
      >>> float(decjax.complete(4).matrix()[2, 1])
      0.25
    """
    n = check_int("n", n, minimum=1)
    return _average(n, [1.0], "complete", exchange)


def solo(n: int) -> Topology:
    """No communication: ``W = I``. Each worker trains alone (a baseline).

    Examples:
      >>> import decjax
      >>> decjax.solo(3).matrix().tolist()
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    n = check_int("n", n, minimum=1)
    return _average(n, [0.0], "solo")


def periodic_average(n: int, every: int, *, exchange: str = "allreduce") -> Topology:
    """Exact global averaging every ``every`` steps, no communication otherwise.

    ``W_t = 11^T / n`` when ``(t + 1) mod every == 0``, else ``I``: with local
    optimizer steps this is local SGD / periodic model averaging. ``exchange``:
    how an average travels (``"allreduce"`` or ``"all_to_all"``, see :func:`complete`).

    Examples:
      >>> import decjax
      >>> decjax.topology.periodic_average(4, every=3).period
      3
    """
    n = check_int("n", n, minimum=1)
    every = check_int("every", every, minimum=1)
    return _average(n, [0.0] * (every - 1) + [1.0], "periodic_average", exchange)
