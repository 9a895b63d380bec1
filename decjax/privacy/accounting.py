"""Privacy accounting with Google's ``dp-accounting`` (what Flower's and TF Privacy's wrap).

A run of ``steps`` applications of the Gaussian mechanism with noise multiplier
:math:`\\sigma`, each on a Poisson sample of the worker's shard (every example
in independently with probability ``sampling_rate``; 1 is the full batch), is
``(epsilon, delta)``-DP for each worker's data, per worker (local DP of the
updates it releases). ``accountant="pld"`` (privacy loss distributions, tight)
or ``"rdp"`` (Rényi DP, an upper bound). The extra ``decjax[privacy]``
installs the package.
"""

from __future__ import annotations

from typing import Any

from decjax._validation import check_choice, check_in_range, check_int, check_nonnegative

ACCOUNTANTS = ("pld", "rdp")


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "privacy accounting needs dp-accounting: pip install 'decjax[privacy]'"
        ) from err
    return dp_accounting


def epsilon(
    steps: int,
    noise_multiplier: float,
    *,
    delta: float,
    sampling_rate: float = 1.0,
    accountant: str = "pld",
) -> float:
    """The smallest epsilon of ``steps`` Poisson-subsampled Gaussian mechanisms at ``delta``
    (``inf`` without noise, 0 after no step).

    Examples:
      >>> round(epsilon(100, 10.0, delta=1e-5), 4)  # a Gaussian mechanism with mu = 1
      4.3772
    """
    steps = check_int("steps", steps, minimum=0)
    check_nonnegative("noise_multiplier", noise_multiplier)
    check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    check_in_range("sampling_rate", sampling_rate, 0.0, 1.0, closed="right")
    check_choice("accountant", accountant, ACCOUNTANTS)
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    dp = _dp_accounting()
    event = dp.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp.PoissonSampledDpEvent(sampling_rate, event)
    if accountant == "pld":
        account = dp.pld.PLDAccountant()
    else:
        account = dp.rdp.RdpAccountant()
    account.compose(event, steps)
    return float(account.get_epsilon(delta))
