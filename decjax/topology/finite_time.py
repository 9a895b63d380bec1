"""Graphs whose period averages exactly: the k-peer hyper-hypercube and Base-(k+1) graphs.

Takezawa, Sato, Bao, Niwa, Yamada. *Beyond Exponential Graph:
Communication-Efficient Topologies for Decentralized Learning via Finite-time
Convergence*, NeurIPS 2023 (arXiv:2305.11420).

The one-peer exponential graph averages exactly after ``log2 n`` steps only
when ``n`` is a power of two. A Base-(k+1) graph does it for **any** ``n``
with at most ``k`` peers per worker and step. Every step here is symmetric
and doubly stochastic, and built from two moves:

*group averaging* (the k-peer hyper-hypercube)
    when every prime factor of ``m`` is at most ``k + 1``, write
    ``m = f_1 ... f_L`` with ``f_l <= k + 1``; a worker's position has digits
    in that mixed radix, and step ``l`` averages each group of ``f_l`` workers
    that differ only in digit ``l``: after ``L`` steps all ``m`` hold the mean.
*merging* (the simple Base-(k+1) graph)
    otherwise write ``m`` in base ``k + 1``, ``m = sum_l a_l (k+1)^{p_l}``
    (``a_l <= k``, ``p_1 > p_2 > ...``), and split the workers into blocks of
    those sizes. Each block averages internally. Then, for ``l = 1, 2, ...``,
    every worker of the later blocks (together ``S_{l+1}`` workers) takes
    weight ``m_l / S_l`` from ``a_l`` fresh workers of block ``l`` — one from
    each of its ``a_l`` sub-blocks of size ``(k+1)^{p_l} > S_{l+1}``; the
    later blocks then hold the weighted mean of ``S_l``, and block ``l``
    repairs the shares it gave by averaging each sub-block again. The last
    block ends with the global mean, and every repair ends before the period
    does.

:func:`base_graph` also tries the paper's composite form (``n = n_s n_r`` with
``n_s`` the part of ``n`` whose prime factors are at most ``k + 1``: simple
Base-(k+1) graphs on ``n_s`` groups of ``n_r`` workers, then group averaging
across them) and keeps the shorter period.
"""

from __future__ import annotations

from decjax._validation import check_int
from decjax.topology.base import Topology
from decjax.topology.graphs import Step, from_neighbor_lists, lists_from_steps


def _factors(m: int, k: int) -> list[int] | None:
    """``m`` as a product of factors ``<= k + 1`` (largest first), or None if impossible."""
    factors, rest = [], m
    for f in range(k + 1, 1, -1):
        while rest % f == 0:
            factors.append(f)
            rest //= f
    return factors if rest == 1 else None


def _group_averaging(nodes: list[int], k: int) -> list[Step]:
    """The k-peer hyper-hypercube on ``nodes`` (their count must be (k+1)-smooth)."""
    factors = _factors(len(nodes), k)
    assert factors is not None
    steps, stride = [], 1
    for f in factors:
        step: Step = {}
        for p in range(len(nodes)):
            base = p - ((p // stride) % f) * stride  # the group's member with digit 0
            for d in range(f):
                q = base + d * stride
                if q != p:
                    step[nodes[p], nodes[q]] = 1.0 / f
        steps.append(step)
        stride *= f
    return steps


def _in_parallel(*schedules: list[Step]) -> list[Step]:
    """Run schedules on disjoint workers side by side (shorter ones idle at the end)."""
    length = max((len(s) for s in schedules), default=0)
    out = []
    for t in range(length):
        step: Step = {}
        for schedule in schedules:
            if t < len(schedule):
                step.update(schedule[t])
        out.append(step)
    return out


def _digits(m: int, base: int) -> list[tuple[int, int]]:
    """``m = sum a (base ** p)``: the non-zero ``(a, p)``, highest power first."""
    out, p = [], 0
    while m:
        m, a = divmod(m, base)
        if a:
            out.append((a, p))
        p += 1
    return out[::-1]


def _simple_base(nodes: list[int], k: int) -> list[Step]:
    """The simple Base-(k+1) graph on ``nodes``: blocks in base ``k + 1``, then merges."""
    if len(nodes) == 1:
        return []
    if _factors(len(nodes), k) is not None:
        return _group_averaging(nodes, k)
    blocks, start = [], 0
    for a, p in _digits(len(nodes), k + 1):
        size = a * (k + 1) ** p
        blocks.append((a, p, nodes[start : start + size]))
        start += size
    steps = _in_parallel(*(_group_averaging(block, k) for _, _, block in blocks))
    repairs: list[list[Step]] = []  # per merge round: block l's sub-blocks averaging again
    for l, (a, p, block) in enumerate(blocks[:-1]):
        later = [node for _, _, b in blocks[l + 1 :] for node in b]
        total = len(block) + len(later)  # S_l
        sub = (k + 1) ** p
        step: Step = {}
        for r, i in enumerate(later):
            for s in range(a):
                j = block[s * sub + r]  # a fresh worker of sub-block s
                step[i, j] = step[j, i] = len(block) / (total * a)
        subs = [block[s * sub : (s + 1) * sub] for s in range(a)]
        repairs.append([step, *_in_parallel(*(_group_averaging(b, k) for b in subs))])
    # merge round l starts at offset l; its repair follows on block l's own workers
    merged = []
    for t in range(max(l + len(r) for l, r in enumerate(repairs))):
        step = {}
        for l, repair in enumerate(repairs):
            if 0 <= t - l < len(repair):
                step.update(repair[t - l])
        merged.append(step)
    return steps + merged


def _composite(n: int, k: int) -> list[Step] | None:
    """Simple Base-(k+1) graphs on groups, then group averaging across them (or None)."""
    smooth = max(d for d in range(1, n + 1) if n % d == 0 and _factors(d, k) is not None)
    rest = n // smooth
    if smooth == 1 or rest == 1:
        return None
    groups = [list(range(g * rest, (g + 1) * rest)) for g in range(smooth)]
    across = [list(range(r, n, rest)) for r in range(rest)]
    first = _in_parallel(*(_simple_base(g, k) for g in groups))
    return first + _in_parallel(*(_group_averaging(c, k) for c in across))


def base_graph(n: int, k: int = 1) -> Topology:
    """Base-(k+1) graph: at most ``k`` peers per step, exact averaging in one period, any ``n``.

    A time-varying topology of symmetric doubly stochastic steps whose product
    over one period is exactly ``11^T / n`` (to float64 rounding, tested for
    every ``n <= 64`` and ``k <= 4``), for every ``n`` — the one-peer
    exponential graph needs ``n = 2^tau``. With ``k = 1`` every worker talks
    to at most one peer per step. See :mod:`decjax.topology.finite_time` for
    the construction.

    Args:
      n: number of workers, ``>= 1``.
      k: the maximum number of peers per step, ``>= 1``.

    Returns:
      A :class:`~decjax.topology.kinds.Sparse` topology whose period is one
      exact-averaging cycle.

    Examples:
      >>> import numpy as np, decjax
      >>> topo = decjax.topology.base_graph(6, k=1)
      >>> topo.period, topo.max_degree()
      (4, 1)
      >>> bool(np.allclose(decjax.topology.period_product(topo), 1 / 6))
      True

    References:
      Takezawa, Sato, Bao, Niwa, Yamada. NeurIPS 2023 (arXiv:2305.11420).
    """
    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=1)
    steps = _simple_base(list(range(n)), k)
    composite = _composite(n, k)
    if composite is not None and len(composite) < len(steps):
        steps = composite
    neighbors, weights = lists_from_steps(n, steps or [{}])
    return from_neighbor_lists(neighbors, weights, name=f"base_graph(k={k})")
