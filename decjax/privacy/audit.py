r"""A linear reconstruction audit of gossip (El Mrini, Cyffers and Bellet, ICML 2024,
arXiv 2402.10001): which honest nodes' values can colluding attackers recover exactly?

Under gossip :math:`x^{t+1} = W_t x^t` every value an attacker sees is a known linear
combination of the initial values :math:`x^0`: the rows of its *knowledge matrix*
:math:`K`. Node :math:`u`'s value is reconstructible exactly when :math:`e_u` lies in the
row space of :math:`K` (:math:`\operatorname{rank}[K; e_u] = \operatorname{rank} K`).

What an attacker sees, ``view``:

- ``"messages"``: its own value and, each round :math:`t < T`, every neighbour's message
  :math:`x^t_w` (plain gossip; after one round, its neighbours' values themselves);
- ``"sums"``: its own value and its own state :math:`x^t_a` for :math:`1 \le t \le T`
  (its neighbours' messages hidden by secure aggregation,
  :mod:`decjax.privacy.secure`): on the complete graph after one round it knows only the
  sum of the others' values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decjax._validation import check_choice, check_int
from decjax.privacy._graph import fixed_matrices, links, powers
from decjax.topology import Topology

VIEWS = ("messages", "sums")


def knowledge_matrix(
    topology: Topology, attackers: Sequence[int], rounds: int, view: str = "messages"
) -> np.ndarray:
    """``(rows, n)`` float64: each row a combination of the initial values an attacker saw."""
    check_choice("view", view, VIEWS)
    rounds = check_int("rounds", rounds, minimum=1)
    matrices = fixed_matrices(
        topology, "knowledge_matrix", "the audit needs the matrices the attackers know"
    )
    chosen = _attackers(attackers, topology.n)
    rows = []
    for t, (power, w) in enumerate(powers(matrices, rounds + 1)):
        if t == 0 or view == "sums":
            rows.append(power[chosen])  # its own value, then (sums) its state after round t
        if view == "messages" and t < rounds:
            adjacent = links(w)
            rows += [power[np.flatnonzero(adjacent[a])] for a in chosen]
    return np.concatenate(rows)


def reconstructed(
    topology: Topology,
    attackers: Sequence[int],
    rounds: int,
    view: str = "messages",
    *,
    tol: float = 1e-9,
) -> np.ndarray:
    """The honest nodes whose values the attackers can recover exactly after ``rounds``."""
    k = knowledge_matrix(topology, attackers, rounds, view)
    rank = np.linalg.matrix_rank(k, tol=tol)
    honest = np.setdiff1d(np.arange(topology.n), _attackers(attackers, topology.n))
    eye = np.eye(topology.n)
    return np.array(
        [u for u in honest if np.linalg.matrix_rank(np.vstack([k, eye[u]]), tol=tol) == rank],
        dtype=int,
    )


def _attackers(attackers: Sequence[int], n: int) -> np.ndarray:
    out = np.unique(np.asarray(attackers, int))
    if out.size == 0 or out.min() < 0 or out.max() >= n:
        raise ValueError(f"attackers must be distinct workers in [0, {n}), got {attackers!r}")
    return out
