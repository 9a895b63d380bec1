"""Argument checks shared by every public constructor.

Each check raises before anything is traced or compiled, with a message that
names the argument and the rule it broke. Values that are JAX tracers (for
example a learning rate being swept under ``jax.vmap``) or schedules
(callables) cannot be checked on the host and are let through.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np


def is_traced(value: Any) -> bool:
    """True when ``value`` is (or contains) a JAX tracer."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def _concrete_scalar(name: str, value: Any) -> float | None:
    """The Python float of a concrete scalar; None for tracers and callables."""
    if callable(value) or is_traced(value):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    array = np.asarray(value)
    if (
        array.shape != ()
        or not np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        raise TypeError(f"{name} must be a real scalar, got {type(value).__name__} {value!r}")
    return float(array)


def check_positive(name: str, value: Any) -> None:
    """``value > 0`` (schedules and traced values pass)."""
    x = _concrete_scalar(name, value)
    if x is not None and not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_finite(name: str, value: Any) -> None:
    """A finite real number (traced values pass)."""
    x = _concrete_scalar(name, value)
    if x is not None and not np.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """``value >= 0`` (schedules and traced values pass)."""
    x = _concrete_scalar(name, value)
    if x is not None and not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_in_range(name: str, value: Any, low: float, high: float, *, closed: str = "both") -> None:
    """``low <= value <= high`` with ``closed`` in {"both", "left", "right", "neither"}."""
    x = _concrete_scalar(name, value)
    if x is None:
        return
    lo_ok = x >= low if closed in ("both", "left") else x > low
    hi_ok = x <= high if closed in ("both", "right") else x < high
    if not (lo_ok and hi_ok):
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """A Python integer (not bool), optionally ``>= minimum``; returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_callable(name: str, value: Any) -> Callable:
    """``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def is_prng_key(x: Any) -> bool:
    """True for a typed PRNG key array (``jax.random.key``), whose data needs unwrapping."""
    return jax.dtypes.issubdtype(jax.numpy.result_type(x), jax.dtypes.prng_key)


def as_key(name: str, key: Any) -> jax.Array:
    """One PRNG key: a ``jax.random.key`` (or a raw ``uint32[2]`` key), or an int seed >= 0.

    An int seed becomes ``jax.random.key(seed)``; anything else (``None``, a
    string, a float, a batch of keys) is refused naming ``name``.
    """
    fix = f"pass {name}=jax.random.key(0) or an int seed"
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if not 0 <= int(key) < 2**63:
            raise ValueError(f"{name} as an int seed must be in [0, 2**63), got {key}")
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    if dtype is None or (isinstance(key, np.ndarray | np.generic) and key.dtype == object):
        raise TypeError(f"{name} must be a PRNG key; got {type(key).__name__} {key!r}: {fix}")
    shape = np.shape(key)
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(
                f"{name} must be one key, got a batch of shape {shape}; for several seeds use "
                "decjax.sweep with a 'seed' grid entry"
            )
        return key
    if np.issubdtype(dtype, np.unsignedinteger) and shape == (2,):
        return key  # a raw (legacy) key, jax.random.PRNGKey(0)
    raise TypeError(
        f"{name} must be a PRNG key, got an array of dtype {dtype} and shape {shape}: {fix}"
    )


def check_stacked(name: str, tree: Any) -> int:
    """A non-empty pytree whose leaves all share a leading (worker) axis; returns its size."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must have at least one leaf")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"{name} must be stacked over workers: every leaf needs the same leading axis n, "
            f"got shapes {[np.shape(x) for x in leaves][:4]}"
        )
    (n,) = sizes  # one size, not None (refused above)
    return int(n)  # type: ignore[arg-type]


def available_memory(device: bool = True) -> int:
    """Bytes of memory to size a run against: the first device's limit on an accelerator,
    else (or with ``device=False``) the host's RAM."""
    if device:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
