"""Datasets held as arrays: bundled real data (offline) or the user's own arrays."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from decjax._validation import check_in_range, check_int


class Dataset(NamedTuple):
    """A supervised dataset split into train and test arrays (float32 inputs, int32 labels)."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def from_arrays(
    x,
    y,
    *,
    x_test=None,
    y_test=None,
    test_fraction: float = 0.2,
    seed: int = 0,
    num_classes: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from local arrays (no download).

    If ``x_test``/``y_test`` are not given, a stratified ``test_fraction`` of
    ``(x, y)`` is held out with ``seed``.

    Examples:
      >>> import numpy as np, decjax
      >>> ds = decjax.data.from_arrays(np.random.rand(100, 5), np.arange(100) % 2)
      >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
      ((80, 5), (20, 5), 2)
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"x must be (N, features...) and y (N,) with the same N, got {x.shape} and {y.shape}"
        )
    if len(x) == 0:
        raise ValueError("x and y must hold at least one example, got 0")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    check_features("x", x)
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    if x_test is None:
        from sklearn.model_selection import train_test_split

        check_in_range("test_fraction", test_fraction, 0.0, 1.0, closed="neither")
        check_labels({"y": y}, num_classes)
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:
            raise ValueError(
                f"class {classes[np.argmin(counts)]} has 1 example: a stratified test split "
                "needs 2 of each class; give x_test and y_test"
            )
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y
        )
    x_test, y_test = np.asarray(x_test), np.asarray(y_test)
    if x_test.shape[1:] != x.shape[1:] or len(x_test) != len(y_test):
        raise ValueError(f"x_test must be (M, {x.shape[1:]}) matching y_test, got {x_test.shape}")
    if not np.issubdtype(y_test.dtype, np.integer):
        raise TypeError(f"y_test must hold integer class labels, got dtype {y_test.dtype}")
    check_features("x_test", x_test)
    num_classes = check_labels({"y": y, "y_test": y_test}, num_classes)
    return Dataset(
        x_train=jax.device_put(x.astype(np.float32)),
        y_train=jax.device_put(y.astype(np.int32)),
        x_test=jax.device_put(x_test.astype(np.float32)),
        y_test=jax.device_put(y_test.astype(np.int32)),
        num_classes=num_classes,
    )


def check_features(name: str, x: np.ndarray, source: str = "") -> None:
    """Real, finite inputs; the first bad one named (``source``: the file they came from)."""
    where = f"{source}: " if source else ""
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{where}{name} must hold real numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            index = np.unravel_index(int(np.argmax(bad)), x.shape)
            raise ValueError(
                f"{where}{name} holds {x[index]} at index {tuple(int(i) for i in index)}: "
                "inputs must be finite"
            )


def check_labels(labels: dict[str, np.ndarray], num_classes, source: str = "") -> int:
    """The number of classes, with every label in ``[0, num_classes)``; the first label
    outside is named with its array and index (and ``source``, the file).

    Without ``num_classes`` it is ``max + 1``, refused when fewer than half of those
    classes occur (one label of 10**6 among 0..9 is an error, not a 10**6-class task:
    pass ``num_classes`` if it is meant).
    """
    where = f"{source}: " if source else ""
    flat = {name: np.asarray(y).ravel() for name, y in labels.items()}
    for name, y in flat.items():
        if y.size and y.min() < 0:
            i = int(np.argmax(y < 0))
            raise ValueError(f"{where}{name}[{i}] is {int(y[i])}: labels must be >= 0")
    if num_classes is None:
        every = np.concatenate(list(flat.values()))
        top = int(every.max()) + 1
        present = np.unique(every).size
        if present * 2 < top:
            name, i = _first_at_least(flat, top - 1)
            raise ValueError(
                f"{where}{name}[{i}] is {top - 1}, so the labels would need {top} classes but "
                f"only {present} occur: fix that label, or pass num_classes={top} if meant"
            )
        return top
    num_classes = check_int("num_classes", num_classes, minimum=1)
    for name, y in flat.items():
        if y.size and y.max() >= num_classes:
            i = int(np.argmax(y >= num_classes))
            raise ValueError(
                f"{where}{name}[{i}] is {int(y[i])}: labels must be in [0, {num_classes}) "
                f"for {num_classes} classes"
            )
    return num_classes


def _first_at_least(flat: dict[str, np.ndarray], value: int) -> tuple[str, int]:
    for name, y in flat.items():
        hits = np.flatnonzero(y >= value)
        if hits.size:
            return name, int(hits[0])
    raise AssertionError("no such label")  # pragma: no cover


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 8×8 images, 10 classes, offline.

    Pixels are scaled to ``[0, 1]`` and flattened to 64 features; a stratified
    ``test_fraction`` is held out.

    Examples:
      >>> import decjax
      >>> ds = decjax.data.load_digits()
      >>> ds.x_train.shape, ds.num_classes
      ((1437, 64), 10)
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return from_arrays(
        bunch.data / 16.0, bunch.target, test_fraction=test_fraction, seed=seed, num_classes=10
    )
