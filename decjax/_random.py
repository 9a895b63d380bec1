"""Host-side randomness derived from JAX keys, so one seed fixes a whole run."""

from __future__ import annotations

import numbers

import jax
import numpy as np


def numpy_rng(key) -> np.random.Generator:
    """A numpy generator seeded from a JAX key (typed or raw) or an int seed.

    Host-side randomness (graph sampling, data partitions) derives from the
    same keys as device-side randomness, so one seed fixes a whole run.
    """
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"key as an int seed must be >= 0, got {key}")
        return np.random.default_rng(int(key))
    try:
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        data = np.asarray(jax.device_get(key))
    except (AttributeError, TypeError) as err:
        raise TypeError(f"key must be a jax.random.key or an int seed, got {key!r}") from err
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"key must be a jax.random.key or an int seed, got dtype {data.dtype}")
    return np.random.default_rng(data.astype(np.uint32).ravel())
