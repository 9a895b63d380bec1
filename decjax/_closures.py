"""What a transformation holds: the numbers and functions reachable from its closures.

optax and decjax build transformations as closures, so a NaN learning rate or a
schedule lives in a closure cell, not an attribute. :func:`held` walks them
(functions' closure cells, tuples and NamedTuples, dicts, partials and plain
objects) and yields each value with the name of the variable holding it, so a
check can refuse ``optax.sgd(nan)`` or a schedule returning a negative step
size before anything is traced, naming what it found.
"""

from __future__ import annotations

import functools
import numbers
import types
from collections.abc import Callable, Iterator
from typing import Any

_DEPTH = 24


def held(obj: Any) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` for every number and function reachable from ``obj``'s closures."""
    seen: set[int] = set()

    def walk(value: Any, name: str, depth: int) -> Iterator[tuple[str, Any]]:
        if depth > _DEPTH or id(value) in seen or isinstance(value, bool | str | bytes | type):
            return
        if isinstance(value, numbers.Number):
            yield name, value
            return
        seen.add(id(value))
        if isinstance(value, types.FunctionType):
            yield name, value
            for var, contents in closure_cells(value):
                yield from walk(contents, var, depth + 1)
        elif isinstance(value, types.MethodType):
            yield from walk(value.__func__, name, depth + 1)
        elif isinstance(value, functools.partial):
            yield from walk(value.func, name, depth + 1)
            for part in value.args:
                yield from walk(part, name, depth + 1)
            for key, part in value.keywords.items():
                yield from walk(part, key, depth + 1)
        elif isinstance(value, tuple | list):
            for item in value:
                yield from walk(item, name, depth + 1)
            for key, item in getattr(value, "__dict__", {}).items():
                yield from walk(item, key, depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, str(key), depth + 1)

    yield from walk(obj, "", 0)


def closure_cells(fn: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """``(variable name, value)`` of each filled closure cell of ``fn``."""
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            yield var, cell.cell_contents
        except ValueError:  # an empty cell
            continue


def nonfinite_number(obj: Any) -> tuple[str, float] | None:
    """The first NaN or infinite Python or numpy scalar ``obj`` holds, with its name."""
    for name, value in held(obj):
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            if value != value or value in (float("inf"), float("-inf")):
                return name, float(value)
    return None


def schedules(obj: Any, names: tuple[str, ...] = ("learning_rate",)) -> list[Callable]:
    """The functions ``obj`` holds under one of ``names`` (learning-rate schedules: optax's
    ``scale_by_learning_rate`` and decjax's factories keep them as ``learning_rate``)."""
    found: list[Any] = []
    for name, value in held(obj):
        if name in names and callable(value) and not any(value is f for f in found):
            found.append(value)
    return found
