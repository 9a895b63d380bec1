"""Randomized communication: every worker sends to ``s`` random peers at every step.

The graph is drawn afresh at each step inside ``jit`` (:class:`~decjax.topology.kinds.Random`).
"""

from __future__ import annotations

from decjax._validation import as_key, check_int
from decjax.topology.base import Topology
from decjax.topology.kinds import Epidemic, SOut


def _fanout(n: int, s: int) -> tuple[int, int]:
    n = check_int("n", n, minimum=2)
    s = check_int("s", s, minimum=1)
    if s > n - 1:
        raise ValueError(f"s={s} peers per worker needs n > s workers; got n={n}")
    return n, s


def epidemic(n: int, s: int, *, key=0) -> Topology:
    """Epidemic learning (de Vos et al., NeurIPS 2023): push to ``s`` random peers, average.

    At every step each worker sends its model to ``s`` distinct others drawn
    uniformly; a worker then averages its own model with all it received,
    ``W_t[i, j] = 1 / (1 + d_i^in)`` for the senders ``j`` (and itself). Rows
    sum to one; each column has exactly ``s`` off-diagonal entries; the
    in-degree is ``Bin(n - 1, s / (n - 1))``. The mean-square contraction per
    step is the paper's ``(1/s)(1 - (1 - s/(n-1))^n) - 1/(n-1)``.

    Examples:
      >>> import decjax
      >>> topo = decjax.topology.epidemic(32, 3, key=0)
      >>> topo.representation, topo.max_degree()  # a new graph at every step
      ('random', 3)

    References:
      de Vos, Farhadkhani, Guerraoui, Kermarrec, Pires, Sharma. *Epidemic
      Learning: Boosting Decentralized Learning with Randomized Communication*,
      NeurIPS 2023 (arXiv:2310.01972).
    """
    n, s = _fanout(n, s)
    return Epidemic.sampled(n, s, as_key("key", key), 1.0, f"epidemic(s={s})")


def random_out(n: int, s: int, *, key=0) -> Topology:
    """Random s-out directed graphs for push-sum: each worker splits its mass over itself and
    ``s`` random others, ``W_t[i, j] = 1 / (s + 1)``, drawn afresh at every step.

    Column-stochastic (``topology.push``): use it with :func:`decjax.sgp`,
    :func:`decjax.osgp`, :func:`decjax.push_diging` or
    :func:`decjax.gossip.push_sum_average`.

    Examples:
      >>> import decjax
      >>> topo = decjax.topology.random_out(16, 2, key=0)
      >>> topo.push, topo.column_stochastic, topo.row_stochastic
      (True, True, False)

    References:
      Assran et al., ICML 2019 (arXiv:1811.10792); Kempe et al., FOCS 2003.
    """
    n, s = _fanout(n, s)
    return SOut.sampled(n, s, as_key("key", key), 1.0, f"random_out(s={s})")
