r"""What Byzantine workers send: each attack maps a receiver's view to the vector it is sent.

Attackers are omniscient, as in the papers: they see the honest models of the
current step. Every attack is a frozen dataclass called on one receiver
(``jax.vmap`` maps it over the receivers):
``attack(view) -> (d,)`` where :class:`View` holds the receiver's own model, its
neighbours' models and which of them are honest, the gossip weights, and the
sending Byzantine worker's own (honestly trained) model. A receiver with several
Byzantine neighbours gets the same vector from each of them (the attacks below
are defined per target, as in the authors' code of He, Karimireddy & Jaggi).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from decjax._validation import check_finite, check_int, check_positive


class View(NamedTuple):
    """What the attackers see of one receiver ``i`` at one step."""

    own: jax.Array  # (d,) the receiver's model x_i
    neighbours: jax.Array  # (k, d) the models on its neighbour slots
    honest: jax.Array  # (k,) bool: the slot is a valid neighbour and honest
    byzantine: jax.Array  # (k,) bool: the slot is a valid neighbour and Byzantine
    weights: jax.Array  # (k,) the gossip weights W_ij of the slots
    receiver_honest: jax.Array  # () bool
    key: jax.Array  # a key for this receiver and step (random attacks)
    fiedler: jax.Array  # () phi_i, the receiver's entry of the honest Fiedler vector (or 0)
    spectral: jax.Array  # (d,) sum_j phi_j x_j over the honest workers (or 0)


def _honest_stack(view: View):
    """The receiver (when honest) and its honest neighbours: ``(k + 1, d)`` and a mask."""
    stacked = jnp.concatenate([view.own[None], view.neighbours], axis=0)
    mask = jnp.concatenate([view.receiver_honest[None], view.honest])
    return stacked, mask


def _honest_mean(view: View):
    stacked, mask = _honest_stack(view)
    count = jnp.maximum(jnp.sum(mask), 1).astype(stacked.dtype)
    return jnp.sum(jnp.where(mask[:, None], stacked, 0.0), axis=0) / count, stacked, mask, count


@dataclasses.dataclass(frozen=True)
class Attack:
    """What a Byzantine worker sends (see the module docstring)."""

    def __call__(self, view: View, sender: jax.Array) -> jax.Array:
        raise NotImplementedError

    def poisons_data(self) -> bool:
        """Whether the Byzantine workers train on altered data (:class:`LabelFlip`, whose
        labels a run flips before it starts)."""
        return False

    def uses_fiedler(self) -> bool:
        """Whether the attack reads the honest graph's Fiedler vector (:class:`Spectral`):
        the combine then computes it once, and ``View.fiedler`` / ``View.spectral``."""
        return False

    def uses_own_model(self) -> bool:
        """Whether the message depends on the sender's own (trained) model. When it does
        not, a run skips the Byzantine workers' gradients: with 11 Byzantine workers of
        16 (He et al.'s ring) a step computes 5 workers' gradients, not 16."""
        return True


@dataclasses.dataclass(frozen=True)
class NoAttack(Attack):
    """Send the sender's own model, as an honest worker would: a baseline in which the
    "Byzantine" workers follow the protocol except that they never combine (a defence's
    cost without attackers, on the same graph)."""

    def __call__(self, view, sender):
        return sender


@dataclasses.dataclass(frozen=True)
class Echo(Attack):
    """Send the receiver its own model back: a mute neighbour. Under plain gossip it is
    exactly the graph without the Byzantine workers (their weight stays on the
    receiver), so it measures a rule's cost without attack on the same graph without
    training the Byzantine workers (their gradients are skipped)."""

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        del sender
        return view.own


@dataclasses.dataclass(frozen=True)
class SignFlip(Attack):
    """Send the negation of the sender's own model, :math:`-x_j` (bit flipping in He et al.)."""

    def __call__(self, view, sender):
        return -sender


@dataclasses.dataclass(frozen=True)
class Gaussian(Attack):
    """Send a fresh draw of :math:`\\mathcal N(0, \\sigma^2 I)` to every receiver at every step."""

    std: float = 1.0

    def __post_init__(self):
        check_positive("std", self.std)

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        return self.std * jax.random.normal(view.key, sender.shape, sender.dtype)


@dataclasses.dataclass(frozen=True)
class LabelFlip(Attack):
    """Train on flipped labels :math:`y \\mapsto C - 1 - y` and send the resulting model as it is
    (He, Karimireddy & Jaggi 2022 use ``9 - y`` on MNIST). ``classes`` is :math:`C`.

    The message is the sender's own model; what makes it Byzantine is its data:
    :func:`~decjax.simulate`, :func:`~decjax.sweep` and :func:`~decjax.make_run` flip
    the Byzantine workers' training labels before the run
    (:func:`decjax.data.flip_labels`), so the attack cannot be forgotten.
    """

    classes: int = 10

    def __post_init__(self):
        check_int("classes", self.classes, minimum=2)

    def __call__(self, view, sender):
        return sender

    def poisons_data(self) -> bool:
        return True


def alie_z(n: int, f: int) -> float:
    r"""ALIE's :math:`z_{\max}` (Baruch, Baruch & Goldberg, NeurIPS 2019): with
    :math:`s = \lfloor n/2 + 1 \rfloor - f` supporters needed, :math:`z_{\max} =
    \Phi^{-1}((n - f - s) / (n - f))`.

    Examples:
      >>> round(alie_z(25, 11), 4)
      1.0676
    """
    n, f = check_int("n", n, minimum=2), check_int("f", f, minimum=1)
    if f >= n:
        raise ValueError(f"f ({f}) Byzantine workers must be fewer than n ({n})")
    s = math.floor(n / 2 + 1) - f
    p = (n - f - s) / (n - f)
    if not 0.0 < p < 1.0:
        raise ValueError(f"ALIE's z_max is undefined for n={n}, f={f} (quantile {p:g}); give z=")
    return float(jax.scipy.special.ndtri(p))


@dataclasses.dataclass(frozen=True)
class ALIE(Attack):
    r"""A little is enough (Baruch et al. 2019), per receiver: :math:`\mu - z\,\sigma`, the
    coordinate-wise mean and (unbiased) standard deviation of the receiver's honest
    neighbourhood (itself and its honest neighbours); ``z`` from :func:`alie_z` by default."""

    z: float

    def __post_init__(self):
        check_finite("z", self.z)

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        mean, stacked, mask, count = _honest_mean(view)
        squares = jnp.sum(jnp.where(mask[:, None], (stacked - mean[None]) ** 2, 0.0), axis=0)
        std = jnp.sqrt(squares / jnp.maximum(count - 1, 1))
        return mean - self.z * std


@dataclasses.dataclass(frozen=True)
class IPM(Attack):
    r"""Inner-product manipulation (Xie, Koyejo & Gupta, UAI 2020), per receiver:
    :math:`-\varepsilon` times the mean of the receiver's honest neighbourhood."""

    epsilon: float = 0.1

    def __post_init__(self):
        check_positive("epsilon", self.epsilon)

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        return -self.epsilon * _honest_mean(view)[0]


@dataclasses.dataclass(frozen=True)
class Dissensus(Attack):
    r"""The dissensus attack (He, Karimireddy & Jaggi 2022), per receiver :math:`i`:

    .. math:: x_i - \varepsilon\, \frac{\sum_{j\ \mathrm{honest}} W_{ij} (x_j - x_i)}
       {\sum_{k\ \mathrm{Byzantine}} W_{ik}},

    so that with :math:`\varepsilon = 1` the Byzantine messages cancel the honest pull
    and plain gossip leaves :math:`x_i` unchanged."""

    epsilon: float = 1.0

    def __post_init__(self):
        check_positive("epsilon", self.epsilon)

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        pull = jnp.sum(
            jnp.where(
                view.honest[:, None],
                view.weights[:, None] * (view.neighbours - view.own[None]),
                0.0,
            ),
            axis=0,
        )
        byzantine_weight = jnp.sum(jnp.where(view.byzantine, view.weights, 0.0))
        return view.own - self.epsilon * pull / jnp.where(
            byzantine_weight > 0, byzantine_weight, 1.0
        )


@dataclasses.dataclass(frozen=True)
class Spectral(Attack):
    r"""The spectral heterogeneity attack (Gaucher, Dieuleveut & Hendrikx, ICML 2025,
    arXiv 2410.10418; ``spectral`` in their code): to receiver :math:`i`,

    .. math:: x_i + c\, \phi_i \sum_{j\ \mathrm{honest}} \phi_j x_j,

    :math:`\phi` the Fiedler vector of the honest subgraph's weighted Laplacian (the
    eigenvector of its second smallest eigenvalue, unit norm; a time-varying
    topology's weights averaged over its period). It pushes the two sides of the
    honest graph's sparsest cut apart along the direction in which they already
    differ. Their code searches :math:`c` at every step against the defence (a line
    search over 16 values); here :math:`c` is fixed (``factor``).
    """

    factor: float = 1.0

    def __post_init__(self):
        check_finite("factor", self.factor)

    def uses_fiedler(self) -> bool:
        return True

    def uses_own_model(self) -> bool:
        return False

    def __call__(self, view, sender):
        return view.own + self.factor * view.fiedler * view.spectral


ATTACKS = {
    "none": NoAttack,
    "echo": Echo,
    "sign_flip": SignFlip,
    "gaussian": Gaussian,
    "alie": ALIE,
    "ipm": IPM,
    "dissensus": Dissensus,
    "label_flip": LabelFlip,
    "spectral": Spectral,
}
