"""Partitions: IID, sorted, Dirichlet; reproducibility; bad arguments."""

import numpy as np
import pytest
from helpers import worker_shards

import decjax
from decjax.data import label_histogram, partition


def test_iid_partition_is_disjoint_equal_and_mixed(digits):
    part = partition(digits.y_train, 16, "iid", key=0)
    shards = worker_shards(part)
    assert all(len(s) == 1437 // 16 for s in shards)
    flat = np.concatenate(shards)
    assert len(np.unique(flat)) == len(flat)
    assert (label_histogram(digits.y_train, part, 10) > 0).sum(axis=1).min() >= 8


def test_sorted_partition_gives_each_worker_few_classes(digits):
    part = partition(digits.y_train, 16, "sorted", key=0)
    classes = (label_histogram(digits.y_train, part, 10) > 0).sum(axis=1)
    assert classes.max() <= 2
    labels = np.asarray(digits.y_train)
    firsts = [labels[s].min() for s in worker_shards(part)]
    assert firsts == sorted(firsts)


def test_sorted_with_shuffled_fraction_mixes_only_the_head(digits):
    part = partition(digits.y_train, 8, "sorted", key=0, shuffled_fraction=0.5)
    classes = (label_histogram(digits.y_train, part, 10) > 0).sum(axis=1)
    assert classes[:4].min() >= 4  # shuffled half: many classes per worker
    assert classes[5:].max() <= 2  # untouched tail: still sorted


def test_dirichlet_partition_uses_every_example_once_and_skews_labels(digits):
    skew = []
    for alpha in [0.1, 100.0]:
        part = partition(digits.y_train, 10, "dirichlet", key=1, alpha=alpha)
        flat = np.concatenate(worker_shards(part))
        assert sorted(flat.tolist()) == list(range(1437))
        hist = label_histogram(digits.y_train, part, 10)
        p = hist / hist.sum(axis=1, keepdims=True)
        skew.append(float(np.mean(p.max(axis=1))))
    assert skew[0] > 0.5 > skew[1]


def test_partition_is_reproducible(digits):
    a = partition(digits.y_train, 8, "dirichlet", key=3, alpha=0.5)
    b = partition(digits.y_train, 8, "dirichlet", key=3, alpha=0.5)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda y: partition(y, 0, key=0), ValueError, "n must be >= 1"),
        (lambda y: partition(y, 10_000, key=0), ValueError, "n must be <="),
        (lambda y: partition(y, 4, "random", key=0), ValueError, "scheme must be one of"),
        (lambda y: partition(y, 4, "dirichlet", key=0), ValueError, "alpha must be given"),
        (
            lambda y: partition(y, 4, "dirichlet", key=0, alpha=-1.0),
            ValueError,
            "alpha must be > 0",
        ),
        (lambda y: partition(y, 4, "iid", key=0, alpha=1.0), ValueError, "alpha applies only"),
        (
            lambda y: partition(y, 4, "sorted", key=0, shuffled_fraction=1.5),
            ValueError,
            "shuffled_fraction",
        ),
        (
            lambda y: partition(y, 4, "iid", key=0, shuffled_fraction=0.5),
            ValueError,
            "only to scheme='sorted'",
        ),
        (lambda y: partition(y.astype(float), 4, key=0), ValueError, "integer array"),
        (lambda y: partition(y, 4, key=1.5), TypeError, "key must be"),
        (lambda y: decjax.data.from_arrays(np.ones((3, 2)), y[:4]), ValueError, "same N"),
        (
            lambda y: decjax.data.from_arrays(np.ones((4, 2)), y[:4] + 0.5),
            TypeError,
            "integer class",
        ),
        (lambda y: decjax.data.distribute(np.ones(3), 4, key=0), TypeError, "Dataset"),
    ],
)
def test_bad_arguments_are_rejected(digits, call, error, message):
    with pytest.raises(error, match=message):
        call(np.asarray(digits.y_train))
