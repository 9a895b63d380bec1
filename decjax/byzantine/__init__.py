"""Byzantine-robust decentralized learning: attacks, robust combines, honest-only metrics.

Some workers are Byzantine (:class:`Byzantine`: their indices and what they send);
every honest worker combines what it receives with a robust rule instead of the
linear gossip average (:class:`Robust`, taken by ``decjax.dpsgd(..., robust=...)``
and every algorithm built with :func:`decjax.combine` / :func:`decjax.decentralize`).

    >>> import decjax
    >>> from decjax import byzantine as byz
    >>> n = 16
    >>> robust = byz.Robust(byz.Clipping(), byz.Byzantine(byz.place(n, 3), byz.Dissensus()))
    >>> tx = decjax.dpsgd(0.05, decjax.exponential(n), robust=robust)
"""

from decjax.byzantine.attacks import (
    ALIE,
    ATTACKS,
    IPM,
    Attack,
    Dissensus,
    Echo,
    Gaussian,
    LabelFlip,
    NoAttack,
    SignFlip,
    Spectral,
    alie_z,
)
from decjax.byzantine.combine import (
    Byzantine,
    Robust,
    honest_fiedler,
    neighbour_lists,
    place,
    place_by_degree,
    robust_mix,
)
from decjax.byzantine.metrics import honest_consensus_distance, honest_mean
from decjax.byzantine.rules import (
    IOS,
    RULES,
    Clipping,
    CSPlus,
    GeometricMedian,
    Gossip,
    Krum,
    Median,
    PaperClipping,
    Rule,
    TrimmedMean,
)

__all__ = [
    "ALIE",
    "ATTACKS",
    "IOS",
    "IPM",
    "RULES",
    "Attack",
    "Byzantine",
    "CSPlus",
    "Clipping",
    "Dissensus",
    "Echo",
    "Gaussian",
    "GeometricMedian",
    "Gossip",
    "Krum",
    "LabelFlip",
    "Median",
    "NoAttack",
    "PaperClipping",
    "Robust",
    "Rule",
    "SignFlip",
    "Spectral",
    "TrimmedMean",
    "alie_z",
    "honest_consensus_distance",
    "honest_fiedler",
    "honest_mean",
    "neighbour_lists",
    "place",
    "place_by_degree",
    "robust_mix",
]
