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


def _authors_split(targets, non_iid_alpha, n_workers, seed=0, num_auxiliary_workers=10):
    """RelaySum's tasks/utils/non_iid_dirichlet.py (adapted from Tao Lin), verbatim but for
    names and formatting."""
    import math

    random_state = np.random.RandomState(seed=seed)
    num_indices = len(targets)
    num_classes = len(np.unique(targets))
    indices2targets = np.array(list(enumerate(targets)))
    random_state.shuffle(indices2targets)
    from_index = 0
    splitted_targets = []
    num_splits = math.ceil(n_workers / num_auxiliary_workers)
    split_n_workers = [
        num_auxiliary_workers
        if idx < num_splits - 1
        else n_workers - num_auxiliary_workers * (num_splits - 1)
        for idx in range(num_splits)
    ]
    split_ratios = [w / n_workers for w in split_n_workers]
    for idx, _ in enumerate(split_ratios):
        to_index = from_index + int(num_auxiliary_workers / n_workers * num_indices)
        splitted_targets.append(
            indices2targets[from_index : (num_indices if idx == num_splits - 1 else to_index)]
        )
        from_index = to_index
    idx_batch = []
    for _targets in splitted_targets:
        _targets = np.array(_targets)
        _targets_size = len(_targets)
        _n_workers = min(num_auxiliary_workers, n_workers)
        n_workers = n_workers - num_auxiliary_workers
        min_size = 0
        while min_size < int(0.50 * _targets_size / _n_workers):
            _idx_batch = [[] for _ in range(_n_workers)]
            for _class in range(num_classes):
                idx_class = _targets[np.where(_targets[:, 1] == _class)[0], 0]
                proportions = random_state.dirichlet(np.repeat(non_iid_alpha, _n_workers))
                proportions = np.array(
                    [
                        p * (len(j) < _targets_size / _n_workers)
                        for p, j in zip(proportions, _idx_batch, strict=False)
                    ]
                )
                proportions = proportions / proportions.sum()
                proportions = (np.cumsum(proportions) * len(idx_class)).astype(int)[:-1]
                _idx_batch = [
                    j + i.tolist()
                    for j, i in zip(_idx_batch, np.split(idx_class, proportions), strict=False)
                ]
                min_size = min(len(j) for j in _idx_batch)
        idx_batch += _idx_batch
    return idx_batch


@pytest.mark.parametrize(("alpha", "n"), [(1.0, 16), (0.1, 16), (0.01, 16), (0.5, 7), (0.1, 25)])
def test_the_balanced_dirichlet_split_is_the_authors_draw_for_draw(alpha, n):
    """Lin et al.'s split as RelaySum's code runs it, with the same RandomState seed: the same
    shards, example for example; sizes at least half the group's average."""
    from decjax.data._partition import balanced_dirichlet

    labels = np.random.default_rng(3).integers(0, 10, 3000)
    ours = balanced_dirichlet(labels, n, alpha, seed=11)
    theirs = _authors_split(labels.tolist(), alpha, n, seed=11)
    assert [s.tolist() for s in ours] == theirs
    part = decjax.data.partition(labels, n, "balanced_dirichlet", alpha=alpha, key=4)
    counts = np.asarray(part.counts)
    assert counts.sum() == 3000 and counts.min() >= 0.5 * 3000 / n * 0.8
