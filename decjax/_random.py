"""Randomness derived from JAX keys, so one seed fixes a whole run, and varies all of it.

Inside a run (``simulate``, ``sweep``, ``make_run``) every keyed draw of
decjax — epoch orders, fault realizations, random topologies, the clock's
compute draws, the keys in an algorithm's state — folds in the run's key
(:func:`varied`), so two runs with different keys (a sweep's seeds) differ in
all of them, while each component's own key still selects its stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers

import jax
import jax.numpy as jnp
import numpy as np

_RUN_KEY: contextvars.ContextVar = contextvars.ContextVar("decjax_run_key", default=None)


@contextlib.contextmanager
def run_key(key):
    """While tracing inside this block, :func:`varied` folds in ``key`` (a typed key, traced
    or not). ``simulate`` enters it around each step; ``None`` leaves draws as they are."""
    token = _RUN_KEY.set(key)
    try:
        yield
    finally:
        _RUN_KEY.reset(token)


def varied(key):
    """``key`` folded with the run's key inside :func:`run_key`, else ``key`` itself.

    ``key`` is a typed key or raw key data; the result has the same kind.
    """
    run = _RUN_KEY.get()
    if run is None:
        return key
    return jax.random.fold_in(key, jax.random.bits(run, dtype=jnp.uint32))


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
