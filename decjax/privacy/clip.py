"""``Clip``: DP-SGD on every worker, as an option of ``simulate``, ``sweep`` and ``make_run``.

``privacy=Clip(clip_norm, noise_multiplier=sigma, delta=..., epsilon_budget=...)``
replaces each worker's minibatch gradient by DP-SGD's (per-example clipping to
``clip_norm``, Gaussian noise of ``sigma * clip_norm / B`` per coordinate) on a
Poisson sample of its shard: every example in independently with probability
``q = batch_size / shard size``, the sampling scheme the accountant assumes. The
records gain ``epsilon``: the worst worker's (the smallest shard's, largest
``q``) epsilon at ``delta`` after the record's steps, from ``dp-accounting``.
The guarantee is local DP per worker: it covers each update a worker releases
to its neighbours, whatever they do with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from decjax._validation import check_choice, check_in_range, check_nonnegative, check_positive
from decjax.privacy.accounting import ACCOUNTANTS, epsilon, epsilon_curve, steps_within
from decjax.privacy.correlated import ZeroSum
from decjax.privacy.mechanism import check_clip_norm

# a sweep's grid keys that set the privacy option instead of the transformation
GRID_KEYS = ("clip_norm", "noise_multiplier")


@dataclass(frozen=True)
class Clip:
    """Per-example clipping and Gaussian noise on every worker (DP-SGD), with its accounting.

    Attributes:
      clip_norm: :math:`C`, the bound on each example's gradient norm (``inf``: none,
        only without noise).
      noise_multiplier: :math:`\\sigma`; the noise's per-coordinate standard deviation
        is :math:`\\sigma C / B` (``B`` the expected batch size).
      delta: the :math:`\\delta` at which ``epsilon`` is recorded.
      accountant: ``"pld"`` (privacy loss distributions, tight), ``"rdp"`` or
        ``"rdp_classic"`` (:mod:`decjax.privacy.accounting`).
      epsilon_budget: stop training when the next step would spend more than this
        epsilon: ``simulate`` ends the run there, ``sweep`` freezes that configuration.
      zero_sum: pairwise noise that cancels in the worker mean (DECOR,
        :class:`~decjax.privacy.ZeroSum`), added to the gradients besides the
        independent noise. ``epsilon`` accounts only for the independent noise (the
        local guarantee against a neighbour that holds the pair's seed).

    Examples:
      >>> from decjax import privacy
      >>> clip = privacy.Clip(1.0, noise_multiplier=10.0)
      >>> round(clip.epsilon(100), 4)  # full batch: a Gaussian mechanism with mu = 1
      4.3772
    """

    clip_norm: float
    noise_multiplier: float = 0.0
    delta: float = 1e-5
    accountant: str = "pld"
    epsilon_budget: float | None = None
    zero_sum: ZeroSum | None = None

    def __post_init__(self):
        check_clip_norm("Clip.clip_norm", self.clip_norm)
        check_nonnegative("Clip.noise_multiplier", self.noise_multiplier)
        if self.noise_multiplier > 0 and self.clip_norm == float("inf"):
            raise ValueError(
                "Clip: noise of noise_multiplier * clip_norm is infinite with clip_norm=inf: "
                "give a finite clip_norm"
            )
        check_in_range("Clip.delta", self.delta, 0.0, 1.0, closed="neither")
        check_choice("Clip.accountant", self.accountant, ACCOUNTANTS)
        if self.epsilon_budget is not None:
            check_positive("Clip.epsilon_budget", self.epsilon_budget)
        if self.zero_sum is not None and not isinstance(self.zero_sum, ZeroSum):
            raise TypeError(
                "Clip.zero_sum must be a decjax.privacy.ZeroSum, got "
                f"{type(self.zero_sum).__name__}"
            )
        if self.zero_sum is not None and self.clip_norm == float("inf"):
            raise ValueError("Clip.zero_sum scales with clip_norm: give a finite clip_norm")

    def with_values(self, **values: float) -> Clip:
        """This option with some of :data:`GRID_KEYS` replaced (a sweep's configuration)."""
        unknown = set(values) - set(GRID_KEYS)
        if unknown:
            raise TypeError(f"Clip.with_values takes {GRID_KEYS}, got {sorted(unknown)}")
        return dataclasses.replace(
            self,
            clip_norm=float(values.get("clip_norm", self.clip_norm)),
            noise_multiplier=float(values.get("noise_multiplier", self.noise_multiplier)),
        )

    def epsilon(self, steps: int, sampling_rate: float = 1.0) -> float:
        """The epsilon at ``delta`` after ``steps`` steps at ``sampling_rate``."""
        return epsilon(
            steps,
            self.noise_multiplier,
            delta=self.delta,
            sampling_rate=sampling_rate,
            accountant=self.accountant,
        )

    def epsilons(self, steps, sampling_rate: float = 1.0):
        """The epsilon after each of the non-decreasing ``steps`` (a run's records)."""
        return epsilon_curve(
            steps,
            self.noise_multiplier,
            delta=self.delta,
            sampling_rate=sampling_rate,
            accountant=self.accountant,
        )

    def steps_allowed(self, steps: int, sampling_rate: float = 1.0) -> int:
        """The steps the budget allows, at most ``steps`` (all without a budget); a budget
        that one step already exceeds is refused in one line."""
        if self.epsilon_budget is None:
            return steps
        if self.noise_multiplier == 0:
            raise ValueError(
                "Clip.epsilon_budget: without noise one step spends an infinite epsilon; "
                "give noise_multiplier > 0"
            )
        allowed = steps_within(
            self.epsilon_budget,
            steps,
            self.noise_multiplier,
            delta=self.delta,
            sampling_rate=sampling_rate,
            accountant=self.accountant,
        )
        if allowed == 0:
            raise ValueError(
                f"Clip.epsilon_budget={self.epsilon_budget} is spent by the first step "
                f"(epsilon {self.epsilon(1, sampling_rate):.4g} at sampling rate "
                f"{sampling_rate:.4g}): raise noise_multiplier or the budget"
            )
        return allowed
