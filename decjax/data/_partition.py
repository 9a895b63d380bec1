"""Assigning examples to workers: iid, label-sorted (unshuffled), Dirichlet, balanced Dirichlet."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax._random import numpy_rng
from decjax._validation import check_choice, check_in_range, check_int, check_positive

SCHEMES = ("iid", "sorted", "dirichlet", "balanced_dirichlet")
GROUP = 10  # workers per group of the balanced Dirichlet split (Lin et al.'s auxiliary workers)


class Partition(NamedTuple):
    """Which examples each worker holds.

    ``indices[i, :counts[i]]`` are worker ``i``'s example indices (rows beyond
    ``counts[i]`` are padding and never sampled), so shards of unequal size
    still stack into one ``(n, m)`` array.
    """

    indices: jax.Array  # int32 (n, m)
    counts: jax.Array  # int32 (n,)


def partition(
    labels,
    n: int,
    scheme: str = "iid",
    *,
    key,
    alpha: float | None = None,
    shuffled_fraction: float = 0.0,
) -> Partition:
    """Split a dataset's examples over ``n`` workers.

    Schemes:

    * ``"iid"`` – a random permutation cut into ``n`` equal shards.
    * ``"sorted"`` – examples sorted by label and cut in order, so each
      worker sees one or two classes (the "unshuffled" setting of DeTAG). With
      ``shuffled_fraction = p`` the first ``p`` of the sorted order is
      shuffled before cutting (Lu & De Sa's 0/25/50/100 % shuffling).
    * ``"dirichlet"`` – for each class, shares drawn from ``Dirichlet(alpha)``
      over workers (smaller ``alpha``, more heterogeneity); every worker gets
      at least one example.
    * ``"balanced_dirichlet"`` – the split of Lin et al.'s code, which QG-DSGDm,
      consensus control and RelaySum ran (their ``non_iid_alpha``): the shuffled
      examples are cut into groups of at most 10 workers; within a group, each
      class is shared by ``Dirichlet(alpha)`` over the workers that do not yet hold
      the group's average count, and the group is drawn again until every worker
      holds half that average. Shards stay near equal in size at any ``alpha``
      (plain ``"dirichlet"`` leaves workers empty at ``alpha = 0.01``). It draws
      from a ``numpy.random.RandomState`` seeded from ``key``, as their code does.

    ``iid`` and ``sorted`` drop the last ``N mod n`` examples so shards are equal.

    Args:
      labels: integer labels of shape ``(N,)``.
      n: number of workers, ``1 <= n <= N``.
      scheme: one of ``"iid"``, ``"sorted"``, ``"dirichlet"``, ``"balanced_dirichlet"``.
      key: a ``jax.random.key`` or int seed.
      alpha: Dirichlet concentration ``> 0`` (only for the Dirichlet schemes).
      shuffled_fraction: in ``[0, 1]`` (only for ``"sorted"``).

    Returns:
      A :class:`Partition`.

    Examples:
      >>> import numpy as np, decjax
      >>> part = decjax.data.partition(np.repeat(np.arange(4), 5), 4, "sorted", key=0)
      >>> sorted(part.indices.tolist()[0])  # worker 0 holds the five examples of class 0
      [0, 1, 2, 3, 4]
    """
    labels = np.asarray(labels)
    sequences = labels.ndim > 1 and scheme == "iid"  # e.g. next-token labels: only iid applies
    if (labels.ndim != 1 and not sequences) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array (or, for scheme='iid', integer sequences), "
            f"got shape {labels.shape}"
        )
    n = check_int("n", n, minimum=1)
    if n > len(labels):
        raise ValueError(f"n must be <= the number of examples ({len(labels)}), got {n}")
    check_choice("scheme", scheme, SCHEMES)
    if scheme in ("dirichlet", "balanced_dirichlet"):
        if alpha is None:
            raise ValueError(f"alpha must be given for scheme={scheme!r}")
        check_positive("alpha", alpha)
    elif alpha is not None:
        raise ValueError(f"alpha applies only to the Dirichlet schemes, got scheme={scheme!r}")
    check_in_range("shuffled_fraction", shuffled_fraction, 0.0, 1.0)
    if shuffled_fraction and scheme != "sorted":
        raise ValueError("shuffled_fraction applies only to scheme='sorted'")
    rng = numpy_rng(key)
    if scheme == "dirichlet":
        shards = _dirichlet(labels, n, alpha, rng)
    elif scheme == "balanced_dirichlet":
        shards = balanced_dirichlet(labels, n, alpha, int(rng.integers(2**31)))  # type: ignore[arg-type]
    else:
        if scheme == "iid":
            order = rng.permutation(len(labels))
        else:
            # Random order within each class, then a stable sort by label.
            perm = rng.permutation(len(labels))
            order = perm[np.argsort(labels[perm], kind="stable")]
            head = round(shuffled_fraction * len(order))
            order[:head] = rng.permutation(order[:head])
        m = len(labels) // n
        shards = list(order[: n * m].reshape(n, m))
    return _pad(shards)


def _dirichlet(labels, n, alpha, rng, max_tries: int = 100):
    classes = np.unique(labels)
    for _ in range(max_tries):
        shards: list[list[Any]] = [[] for _ in range(n)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(n, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for worker, part in enumerate(np.split(idx, cuts)):
                shards[worker].extend(part.tolist())
        if min(len(s) for s in shards) > 0:
            return [np.asarray(rng.permutation(s)) for s in shards]
    raise ValueError(
        f"alpha={alpha!r} leaves some of the {n} workers without examples in "
        f"{max_tries} draws; use a larger alpha or fewer workers"
    )


def balanced_dirichlet(labels, n: int, alpha: float, seed: int, max_tries: int = 10_000):
    """Lin et al.'s split (``distribute_data_dirichlet`` in RelaySum's code), draw for draw
    with ``numpy.random.RandomState(seed)``: the shards as index arrays."""
    state = np.random.RandomState(seed)
    pairs = np.stack([np.arange(len(labels)), labels], axis=1)
    state.shuffle(pairs)
    classes = np.unique(labels)
    sizes = [GROUP] * (-(-n // GROUP) - 1) + [n - GROUP * (-(-n // GROUP) - 1)]
    shards: list[np.ndarray] = []
    start = 0
    for g, workers in enumerate(sizes):
        stop = len(labels) if g == len(sizes) - 1 else start + int(GROUP / n * len(labels))
        chunk, start = pairs[start:stop], stop
        average = len(chunk) / workers
        for _ in range(max_tries):
            held: list[list[int]] = [[] for _ in range(workers)]
            for c in classes:
                idx = chunk[chunk[:, 1] == c, 0]
                shares = state.dirichlet(np.repeat(alpha, workers))
                shares = shares * np.array([len(h) < average for h in held])
                with np.errstate(invalid="ignore", divide="ignore"):
                    shares = shares / shares.sum()
                cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
                held = [
                    h + part.tolist() for h, part in zip(held, np.split(idx, cuts), strict=True)
                ]
            if min(len(h) for h in held) >= int(0.5 * average):
                break
        else:
            raise ValueError(
                f"alpha={alpha!r}: no balanced split of {len(chunk)} examples over {workers} "
                f"workers in {max_tries} draws; use a larger alpha or fewer workers"
            )
        shards += [np.asarray(h, np.int64) for h in held]
    return shards


def _pad(shards) -> Partition:
    counts = np.array([len(s) for s in shards])
    indices = np.zeros((len(shards), counts.max()), dtype=np.int32)
    for i, s in enumerate(shards):
        indices[i, : len(s)] = s
        indices[i, len(s) :] = s[0]
    return Partition(jnp.asarray(indices), jnp.asarray(counts, jnp.int32))


def label_histogram(labels, part: Partition, num_classes: int) -> np.ndarray:
    """``(n, num_classes)`` counts of each label on each worker (to inspect heterogeneity)."""
    labels = np.asarray(labels)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    idx, counts = np.asarray(part.indices), np.asarray(part.counts)
    hist = np.zeros((len(counts), num_classes), dtype=np.int64)
    for i, c in enumerate(counts):
        hist[i] = np.bincount(labels[idx[i, :c]], minlength=num_classes)
    return hist
