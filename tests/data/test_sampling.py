"""Minibatch sampling from each worker's own shard."""

import jax
import numpy as np
import pytest
from helpers import worker_shards

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
