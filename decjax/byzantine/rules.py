r"""Robust aggregation rules: what a worker makes of its own model and its neighbours' messages.

Each rule is a frozen dataclass called on one worker (``jax.vmap`` maps it over
the workers): ``rule(own, messages, weights, valid) -> new own``, with ``own`` the
worker's flattened model ``(d,)``, ``messages`` the ``(k, d)`` vectors received on
its ``k`` neighbour slots, ``weights`` the gossip weights :math:`W_{ij}` of those
slots and ``valid`` which slots hold a real neighbour (padding slots of the
neighbour lists point to the worker itself with weight 0). Rules that ignore the
weights (median, trimmed mean, geometric median, Krum) aggregate the worker's own
model together with its valid messages, as in the authors' code of He, Karimireddy
and Jaggi (2022).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from decjax._validation import check_int, check_positive


def _inputs(own, messages, valid):
    """``[own] + messages`` ``(k + 1, d)``, which of them count, and how many do."""
    stacked = jnp.concatenate([own[None], messages], axis=0)
    counts = jnp.concatenate([jnp.ones((1,), bool), valid])
    return stacked, counts, jnp.sum(counts)


# Up to this many inputs a coordinate-wise sort is a sorting network of elementwise min/max
# (odd-even transposition: m passes over the m rows); XLA's sort of millions of short columns
# is far slower on the CPU.
NETWORK_SORT_UP_TO = 16


def sort_rows(values: jax.Array) -> jax.Array:
    """``jnp.sort(values, axis=0)`` for ``(m, d)`` values (the same result, NaN aside)."""
    m = values.shape[0]
    if m > NETWORK_SORT_UP_TO:
        return jnp.sort(values, axis=0)
    rows = list(values)
    for phase in range(m):
        for i in range(phase % 2, m - 1, 2):
            rows[i], rows[i + 1] = (
                jnp.minimum(rows[i], rows[i + 1]),
                jnp.maximum(rows[i], rows[i + 1]),
            )
    return jnp.stack(rows)


def _sorted_valid(stacked, counts):
    """Per coordinate, the counted values ascending, the others (``+inf``) after them."""
    return sort_rows(jnp.where(counts[:, None], stacked, jnp.inf))


def _differences(own, messages):
    """``m_j - x_i`` ``(k, d)`` and their norms ``(k,)``."""
    differences = messages - own[None]
    return differences, jnp.sqrt(jnp.sum(differences**2, axis=1))


def _nearest_first(distances, weights, valid):
    """The valid slots' weights, the slots ordered by distance (invalid ones last), the
    cumulative weight in that order, and a few float roundings of the total: a cumulative
    weight within that of a target counts as reaching it (ties are common: with one
    weight on every edge, the cumulative weights hit the target exactly)."""
    w = jnp.where(valid, weights, 0.0)
    order = jnp.argsort(jnp.where(valid, distances, jnp.inf))
    return w, order, jnp.cumsum(w[order]), 8 * jnp.finfo(distances.dtype).eps * jnp.sum(w)


def _clipped_gossip(own, differences, distances, weights, tau):
    r""":math:`x_i + \sum_j W_{ij} \min(1, \tau / \lVert z_j \rVert) z_j` (``tau`` may be inf)."""
    safe = jnp.where(distances > tau, distances, 1.0)
    scale = jnp.where(distances > tau, tau / safe, 1.0)
    return own + sum(weights[k] * (scale[k] * differences[k]) for k in range(differences.shape[0]))


@dataclasses.dataclass(frozen=True)
class Rule:
    """A robust aggregation rule (see the module docstring)."""

    def needs(self) -> int:
        """The least number of valid messages every worker must receive."""
        return 0

    def __call__(self, own, messages, weights, valid):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Gossip(Rule):
    r"""Plain gossip, :math:`x_i + \sum_j W_{ij} (m_j - x_i)`: not robust (the baseline)."""

    def __call__(self, own, messages, weights, valid):
        del valid
        return own + sum(weights[k] * (messages[k] - own) for k in range(messages.shape[0]))


@dataclasses.dataclass(frozen=True)
class Clipping(Rule):
    r"""Self-centred clipping (ClippedGossip, He, Karimireddy & Jaggi 2022, arXiv 2202.01545).

    .. math:: x_i \leftarrow x_i + \sum_j W_{ij}\, \mathrm{clip}_\tau(m_j - x_i), \qquad
       \mathrm{clip}_\tau(z) = \min(1, \tau / \lVert z \rVert)\, z.

    With ``tau=None`` the radius is chosen per worker and step as in the
    authors' code: the second largest distance :math:`\lVert m_j - x_i \rVert`
    over the worker's neighbours (the largest when it has one). With a ``tau``
    larger than every distance it is plain gossip, bit for bit.
    """

    tau: float | None = None

    def __post_init__(self):
        if self.tau is not None:
            check_positive("tau", self.tau)

    def _radius(self, distances, valid):
        if self.tau is not None:
            return jnp.asarray(self.tau, distances.dtype)
        ordered = jnp.sort(jnp.where(valid, distances, -jnp.inf))  # valid ones last, ascending
        count = jnp.sum(valid)
        return jnp.where(count >= 2, ordered[-2], ordered[-1])

    def __call__(self, own, messages, weights, valid):
        differences, distances = _differences(own, messages)
        return _clipped_gossip(own, differences, distances, weights, self._radius(distances, valid))


@dataclasses.dataclass(frozen=True)
class Median(Rule):
    """Coordinate-wise median of the worker's own model and its messages (the mean of the two
    middle values for an even count)."""

    def __call__(self, own, messages, weights, valid):
        del weights
        stacked, counts, c = _inputs(own, messages, valid)
        ordered = _sorted_valid(stacked, counts)
        lower = jnp.take(ordered, (c - 1) // 2, axis=0)
        upper = jnp.take(ordered, c // 2, axis=0)
        return (lower + upper) / 2


@dataclasses.dataclass(frozen=True)
class TrimmedMean(Rule):
    """Coordinate-wise trimmed mean: per coordinate, drop the ``b`` largest and ``b`` smallest of
    the worker's own value and its messages, average the rest (``b = 0``: the mean). With
    fewer than ``2b + 1`` inputs at a step (failed links) it trims as many as leave one, as
    the authors' code does."""

    b: int = 1

    def __post_init__(self):
        check_int("b", self.b, minimum=0)

    def needs(self) -> int:
        return 2 * self.b  # own + 2b messages leave one value

    def __call__(self, own, messages, weights, valid):
        del weights
        stacked, counts, c = _inputs(own, messages, valid)
        ordered = _sorted_valid(stacked, counts)
        b = jnp.minimum(self.b, (c - 1) // 2)  # fewer inputs than 2b + 1 (failed links)
        rank = jnp.arange(ordered.shape[0])[:, None]
        kept = (rank >= b) & (rank < c - b)
        total = jnp.sum(jnp.where(kept, ordered, 0.0), axis=0)
        return total / (c - 2 * b).astype(own.dtype)


@dataclasses.dataclass(frozen=True)
class GeometricMedian(Rule):
    r"""Geometric median by the smoothed Weiszfeld iteration (Pillutla, Kakade & Harchaoui,
    RFA, arXiv 1912.13445): ``iterations`` steps of
    :math:`z \leftarrow \sum_j \beta_j v_j / \sum_j \beta_j`,
    :math:`\beta_j = 1 / \max(\lVert z - v_j \rVert, \nu)`, over the worker's own model and
    its messages with equal weights, from their mean."""

    iterations: int = 8
    nu: float = 1e-6

    def __post_init__(self):
        check_int("iterations", self.iterations, minimum=1)
        check_positive("nu", self.nu)

    def __call__(self, own, messages, weights, valid):
        del weights
        stacked, counts, c = _inputs(own, messages, valid)
        alpha = counts.astype(own.dtype)
        z = jnp.sum(alpha[:, None] * stacked, axis=0) / c.astype(own.dtype)

        def weiszfeld(z, _):
            distance = jnp.sqrt(jnp.sum((stacked - z[None]) ** 2, axis=1))
            beta = alpha / jnp.maximum(distance, self.nu)
            return jnp.sum(beta[:, None] * stacked, axis=0) / jnp.sum(beta), None

        return jax.lax.scan(weiszfeld, z, None, length=self.iterations)[0]


@dataclasses.dataclass(frozen=True)
class Krum(Rule):
    """Krum (Blanchard et al., NeurIPS 2017) over the worker's own model and its messages:
    the input whose ``c - f - 2`` nearest other inputs are closest (sum of squared distances),
    ``c`` the number of inputs and ``f`` the Byzantine inputs it tolerates."""

    f: int = 1

    def __post_init__(self):
        check_int("f", self.f, minimum=0)

    def needs(self) -> int:
        return self.f + 2  # c - f - 2 >= 1 with c = own + messages

    def __call__(self, own, messages, weights, valid):
        del weights
        stacked, counts, c = _inputs(own, messages, valid)
        squared = jnp.sum((stacked[:, None] - stacked[None]) ** 2, axis=-1)
        others = counts[None, :] & ~jnp.eye(stacked.shape[0], dtype=bool)
        ordered = jnp.sort(jnp.where(others, squared, jnp.inf), axis=1)
        rank = jnp.arange(stacked.shape[0])[None, :]
        scores = jnp.sum(jnp.where(rank < c - self.f - 2, ordered, 0.0), axis=1)
        scores = jnp.where(counts, scores, jnp.inf)
        return stacked[jnp.argmin(scores)]


@dataclasses.dataclass(frozen=True)
class CSPlus(Rule):
    r"""CS\ :sup:`+`-RG (Gaucher, Dieuleveut & Hendrikx, ICML 2025, arXiv 2410.10418): clipped
    gossip whose radius clips the neighbours carrying the largest :math:`2 b\,w` of weight.

    With the neighbours sorted by distance :math:`\lVert m_j - x_i \rVert` and
    :math:`C_j` the cumulative weight of the ``j`` nearest, the radius is the distance
    of the farthest neighbour with :math:`C_j \le \sum_j W_{ij} - 2 b\,w` (0 when
    none is), then :math:`x_i + \sum_j W_{ij}\, \mathrm{clip}_\tau(m_j - x_i)` as in
    :class:`Clipping`. ``w``, the weight of one Byzantine neighbour, is the largest
    weight the worker gives a neighbour (the authors' code takes the Byzantine
    edges' weight, equal to every edge's with uniform weights); ``b = 0`` is plain
    gossip. Cumulative weights within a few float roundings of the target count as
    reaching it.
    """

    b: int = 1

    def __post_init__(self):
        check_int("b", self.b, minimum=0)

    def needs(self) -> int:
        return 2 * self.b  # 2b clipped neighbours at least

    def __call__(self, own, messages, weights, valid):
        differences, distances = _differences(own, messages)
        w, order, cumulative, slack = _nearest_first(distances, weights, valid)
        target = jnp.sum(w) - 2 * self.b * jnp.max(w)
        within = valid[order] & (cumulative <= target + slack)
        count = jnp.sum(within)
        farthest = jnp.take(distances[order], jnp.maximum(count - 1, 0))
        tau = jnp.where(count > 0, farthest, 0.0)
        tau = jnp.where(self.b == 0, jnp.inf, tau).astype(own.dtype)
        return _clipped_gossip(own, differences, distances, weights, tau)


@dataclasses.dataclass(frozen=True)
class PaperClipping(Rule):
    r"""Self-centred clipping with the ClippedGossip paper's adaptive radius (He, Karimireddy &
    Jaggi 2022, their Section 4 rule as Gaucher et al.'s code implements it, ``cs_he``):

    .. math:: \tau_i = \sqrt{\frac{1}{b\,w} \sum_{j \le J} W_{ij}
       \lVert m_{(j)} - x_i \rVert^2},

    the neighbours sorted by distance, :math:`J` those before the cumulative weight
    reaches :math:`\sum_j W_{ij} - b\,w` (``w`` the largest neighbour weight: ``b``
    Byzantine neighbours carry at most :math:`b\,w`; a cumulative weight within float
    rounding of it counts as reaching it): the weighted spread of the nearest
    neighbours, scaled up by the Byzantine weight. Radius 0 when no neighbour comes
    before; ``b = 0`` is plain gossip. (:class:`Clipping` with
    ``tau=None`` is the authors' own code's simpler choice.)
    """

    b: int = 1

    def __post_init__(self):
        check_int("b", self.b, minimum=0)

    def needs(self) -> int:
        return self.b

    def __call__(self, own, messages, weights, valid):
        differences, distances = _differences(own, messages)
        w, order, cumulative, slack = _nearest_first(distances, weights, valid)
        byzantine_weight = self.b * jnp.max(w)
        before = valid[order] & (cumulative < jnp.sum(w) - byzantine_weight - slack)
        spread = jnp.sum(jnp.where(before, w[order] * distances[order] ** 2, 0.0))
        safe = jnp.where(byzantine_weight > 0, byzantine_weight, 1.0)
        tau = jnp.where(byzantine_weight > 0, jnp.sqrt(spread / safe), jnp.inf)
        return _clipped_gossip(own, differences, distances, weights, tau.astype(own.dtype))


@dataclasses.dataclass(frozen=True)
class IOS(Rule):
    r"""Iterative outlier scissor (Wu, Chen & Ling, IEEE TSP 2023, arXiv 2206.04568).

    Starting from the worker's own model and its valid messages, weighted by the
    gossip weights (the worker's own weight :math:`W_{ii} = 1 - \sum_j W_{ij}`),
    ``f`` times: take the weighted average of the inputs still kept and drop the
    message farthest from it (never the worker's own model; the first of ties).
    The result is the weighted average of what is left, the weights renormalised.
    """

    f: int = 1

    def __post_init__(self):
        check_int("f", self.f, minimum=0)

    def needs(self) -> int:
        return self.f

    def __call__(self, own, messages, weights, valid):
        stacked = jnp.concatenate([own[None], messages], axis=0)
        w = jnp.where(valid, weights, 0.0)
        w = jnp.concatenate([(1 - jnp.sum(w))[None], w])
        kept = jnp.concatenate([jnp.ones((1,), bool), valid & (weights > 0)])

        def average(kept):
            mass = jnp.where(kept, w, 0.0)
            return jnp.sum(mass[:, None] * stacked, axis=0) / jnp.sum(mass)

        def scissor(kept, _):
            distances = jnp.sqrt(jnp.sum((stacked - average(kept)[None]) ** 2, axis=1))
            candidates = kept.at[0].set(False)
            drop = jnp.argmax(jnp.where(candidates, distances, -jnp.inf))
            return kept.at[drop].set(kept[drop] & ~jnp.any(candidates)), None

        kept = jax.lax.scan(scissor, kept, None, length=self.f)[0] if self.f else kept
        return average(kept)


RULES = {
    "gossip": Gossip,
    "clipping": Clipping,
    "median": Median,
    "trimmed_mean": TrimmedMean,
    "geometric_median": GeometricMedian,
    "krum": Krum,
    "ios": IOS,
    "cs_plus": CSPlus,
    "paper_clipping": PaperClipping,
}
