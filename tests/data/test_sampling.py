"""Minibatch sampling from each worker's own shard."""

import jax
import numpy as np
import pytest
from helpers import worker_shards

import decjax
from decjax.data import distribute, partition, sample_batch


def test_sample_batch_draws_only_from_own_shard(digits):
    data = distribute(digits, 8, "dirichlet", key=0, alpha=0.3)
    part = partition(digits.y_train, 8, "dirichlet", key=0, alpha=0.3)
    shards = [set(s.tolist()) for s in worker_shards(part)]
    x, y = jax.jit(sample_batch, static_argnums=2)(data, jax.random.key(5), 64)
    assert x.shape == (8, 64, 64) and y.shape == (8, 64)
    xt = np.asarray(digits.x_train)
    for i in range(8):
        for row in np.asarray(x[i])[:10]:
            matches = set(np.flatnonzero((xt == row).all(axis=1)).tolist())
            assert matches & shards[i]
    x2, _ = sample_batch(data, jax.random.key(5), 64)
    np.testing.assert_array_equal(x, x2)


def test_sample_batch_rejects_bad_batch_size(digits):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        sample_batch(distribute(digits, 4, key=0), jax.random.key(0), 0)


def test_epoch_sampling_sees_every_example_of_a_shard_once_per_epoch(digits):
    data = distribute(digits, 4, "dirichlet", key=0, alpha=1.0, sampling="epochs")
    counts = np.asarray(data.counts)
    batch = 7
    draw = jax.jit(lambda step: sample_batch(data, jax.random.key(0), batch, step)[1])
    index = jax.jit(
        lambda step: jax.vmap(
            lambda k, idx, c: decjax.data.sampling._epoch_rows(k, idx, c, step, batch)
        )(data.epoch_keys, data.indices, data.counts)
    )
    steps = int(counts.max()) * 3 // batch
    rows = np.concatenate([np.asarray(index(t)) for t in range(steps)], axis=1)
    for w, count in enumerate(counts):
        shard = set(np.asarray(data.indices[w, :count]).tolist())
        first, second = rows[w, :count], rows[w, count : 2 * count]
        assert set(first.tolist()) == shard and len(set(first.tolist())) == count  # no repeats
        assert set(second.tolist()) == shard
        assert not np.array_equal(first, second)  # a new permutation every epoch
    np.testing.assert_array_equal(draw(3), draw(3))  # a function of the step only
    assert data.epoch_keys.shape == (4,)


def test_simulate_samples_by_epochs_and_refuses_batches_larger_than_a_shard(digits):
    model = decjax.problems.logistic_regression(64, 10)
    n = 4
    data = distribute(digits, n, "iid", key=0, sampling="epochs")
    res = decjax.simulate(
        model.loss,
        decjax.replicate(model.init(jax.random.key(0)), n),
        decjax.dpsgd(0.5, decjax.ring(n)),
        data,
        steps=100,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(digits.x_test, digits.y_test),
        progress=False,
    )
    assert res.final("test_accuracy") > 0.85
    with pytest.raises(ValueError, match="at most the smallest shard"):
        decjax.simulate(
            model.loss,
            decjax.replicate(model.init(jax.random.key(0)), n),
            decjax.dpsgd(0.5, decjax.ring(n)),
            data,
            steps=10,
            batch_size=1000,
            key=jax.random.key(1),
            progress=False,
        )
    with pytest.raises(ValueError, match="sampling must be one of"):
        distribute(digits, n, "iid", key=0, sampling="shuffle")
