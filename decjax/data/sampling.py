"""Per-worker minibatches: a jitted gather with one key per worker."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decjax import _axis
from decjax._random import numpy_rng, varied
from decjax._validation import check_choice, check_int
from decjax.data._partition import Partition, partition
from decjax.data.datasets import Dataset, check_labels

SAMPLING = ("replacement", "epochs")


class WorkerData(NamedTuple):
    """Training arrays on device plus each worker's shard (a pytree: jit/vmap friendly).

    With ``epoch_keys`` (one key per worker), minibatches walk through a fresh
    random permutation of the worker's shard every epoch, without replacement;
    without, each example is drawn uniformly with replacement.
    """

    x: jax.Array  # (N, ...) all training inputs
    y: jax.Array  # (N,) labels
    indices: jax.Array  # (n, m) per-worker example indices (padded)
    counts: jax.Array  # (n,) shard sizes
    epoch_keys: jax.Array | None = None  # (n,) keys: sampling without replacement, by epochs

    @property
    def n(self) -> int:
        return self.indices.shape[0]


def distribute(
    dataset: Dataset,
    n: int,
    scheme: str = "iid",
    *,
    key,
    alpha: float | None = None,
    shuffled_fraction: float = 0.0,
    sampling: str = "replacement",
) -> WorkerData:
    """Partition ``dataset``'s training set over ``n`` workers (see :func:`partition`).

    ``sampling="replacement"`` draws each minibatch uniformly with replacement
    from the worker's shard; ``"epochs"`` walks through a new random
    permutation of the shard each epoch (what the papers' code does), so
    every example is seen once per epoch; ``simulate`` then needs
    ``batch_size`` at most the smallest shard.

    Examples:
      >>> import decjax
      >>> data = decjax.data.distribute(decjax.data.load_digits(), 16, "sorted", key=0)
      >>> data.indices.shape
      (16, 89)
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a decjax.data.Dataset, got {type(dataset).__name__}")
    check_choice("sampling", sampling, SAMPLING)
    check_labels(
        {"dataset.y_train": np.asarray(dataset.y_train)}, dataset.num_classes, "distribute"
    )
    part: Partition = partition(
        dataset.y_train, n, scheme, key=key, alpha=alpha, shuffled_fraction=shuffled_fraction
    )
    epoch_keys = None
    if sampling == "epochs":
        seed = int(numpy_rng(key).integers(2**31))
        epoch_keys = jax.random.split(jax.random.key(seed), part.indices.shape[0])
    return WorkerData(dataset.x_train, dataset.y_train, part.indices, part.counts, epoch_keys)


def sample_batch(data: WorkerData, key: jax.Array, batch_size: int, step: Any = 0):
    """Draw ``batch_size`` examples per worker from its shard: uniformly with replacement,
    or (with ``epoch_keys``) the ``step``-th batch of its epoch-by-epoch permutations.

    Returns ``(x, y)`` with shapes ``(n, batch_size, ...)`` and ``(n, batch_size)``.
    Each worker uses its own key (``jax.random.split(key, n)``).

    Examples:
      >>> import jax, decjax
      >>> data = decjax.data.distribute(decjax.data.load_digits(), 4, key=0)
      >>> x, y = decjax.data.sample_batch(data, jax.random.key(1), 8)
      >>> x.shape, y.shape
      ((4, 8, 64), (4, 8))
    """
    _check_worker_data(data)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    keys = worker_keys(key, data.n)
    return gather_batch(data, keys, data.indices, data.counts, batch_size, data.epoch_keys, step)


def worker_keys(key: jax.Array, n: int) -> jax.Array:
    """One key per worker, the same whether or not the worker axis is sharded."""
    n = check_int("n", n, minimum=1)
    return _axis.local_rows(jax.random.split(key, _axis.total_workers(n)))


def gather_batch(
    data: WorkerData, keys, indices, counts, batch_size: int, epoch_keys=None, step: Any = 0
):
    """Minibatches for the workers whose ``keys``, shard ``indices`` and ``counts`` are given
    (and, for sampling by epochs, ``epoch_keys`` and the ``step``)."""

    _check_worker_data(data)

    def one(k, idx, count):
        pos = jax.random.randint(k, (batch_size,), 0, count)
        return idx[pos]

    if epoch_keys is None:
        rows = jax.vmap(one)(keys, indices, counts)
    else:  # the worker's epochs, varied by the run's key (another seed: another order)
        rows = jax.vmap(lambda k, idx, c: _epoch_rows(varied(k), idx, c, step, batch_size))(
            epoch_keys, indices, counts
        )
    return jnp.take(data.x, rows, axis=0), jnp.take(data.y, rows, axis=0)


def _check_worker_data(data) -> None:
    if not isinstance(data, WorkerData):
        raise TypeError(
            f"data must be a decjax.data.WorkerData (decjax.data.distribute), got "
            f"{type(data).__name__}"
        )


def _epoch_rows(key, idx, count, step, batch_size: int):
    """Examples ``step * B ... step * B + B - 1`` of the worker's sequence of epochs, each
    epoch ``e`` a permutation of its shard drawn from ``fold_in(key, e)`` (``B <= count``, so
    a batch spans at most two epochs)."""
    slots = idx.shape[0]
    seen = jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size)
    epoch, rank = seen // count, seen % count

    def permutation(e):
        u = jax.random.uniform(jax.random.fold_in(key, e), (slots,))
        return jnp.argsort(jnp.where(jnp.arange(slots) < count, u, 2.0))  # padding last

    first = epoch[0]
    pos = jnp.where(epoch == first, permutation(first)[rank], permutation(first + 1)[rank])
    return idx[pos]
