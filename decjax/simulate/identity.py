"""The identity of a run, as a checkpoint records it: what must match for a resume to be honest.

Shapes alone cannot tell two runs apart (another learning rate, topology,
seed, data split or algorithm variant has the same state shapes), so a
checkpoint also records, field by field:

* ``algorithm`` – the functions and options (strings, booleans) reachable from
  the transformation's closures (e.g. ``form='parallel'``, a compressor's name);
* ``hyperparameters`` – the numbers and arrays reachable from them (learning
  rate, momentum, ...), and a sweep's grid;
* ``topology`` – every :class:`~decjax.topology.Topology` reachable from them
  (weights, neighbour lists, fault model);
* ``key``, ``initial params``, ``initial optimizer state`` – hashes of the run's start;
* ``data``, ``eval_data`` – hashes of the arrays;
* ``loss_fn``, ``eval_fn`` – qualified names;
* ``timing`` – the time model (:mod:`decjax.timing`), whose ``time`` records a resume continues;
* ``run_id`` – the user's own label, for what no hash can see (a global
  variable read inside ``loss_fn``, say).

Each field is readable text when short and a SHA-256 digest otherwise, so a
mismatch names the first field that differs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import numbers
import types
from typing import Any

import jax
import numpy as np

from decjax._validation import is_prng_key
from decjax.distributed import to_host
from decjax.topology import Topology

FIELDS = (
    "algorithm",
    "hyperparameters",
    "topology",
    "key",
    "initial params",
    "initial optimizer state",
    "initial model state",
    "data",
    "eval_data",
    "loss_fn",
    "eval_fn",
    "timing",
    "run_id",
)
_READABLE = 160  # longer texts are stored as digests
_DEPTH = 24  # closures nest deeply in optax chains; cycles are cut by identity


def array_digest(x) -> str:
    """Hash of an array's dtype, shape and bytes (keys by key data; sharded arrays gathered)."""
    if is_prng_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, jax.core.Tracer):
        return "traced"
    host = np.ascontiguousarray(to_host(x) if isinstance(x, jax.Array) else np.asarray(x))
    digest = hashlib.sha256(f"{host.dtype}{host.shape}".encode())
    digest.update(host.tobytes())
    return digest.hexdigest()[:16]


def tree_digest(tree) -> str:
    """Hash of a pytree: its structure and every leaf."""
    leaves, treedef = jax.tree.flatten(tree)
    digest = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        digest.update(array_digest(leaf).encode())
    return digest.hexdigest()[:16]


def _text(parts: list[str]) -> str:
    text = ", ".join(parts)
    if len(text) <= _READABLE:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def function_name(fn) -> str:
    if fn is None:
        return "None"
    fn = getattr(fn, "func", fn)  # functools.partial
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else name


class _Walker:
    """Collects what a transformation closes over, sorted into the identity's fields."""

    def __init__(self):
        self.algorithm: list[str] = []
        self.numbers: list[str] = []
        self.topologies: list[str] = []
        self._seen: set[int] = set()

    def walk(self, obj: Any, depth: int = 0) -> None:
        if depth > _DEPTH or id(obj) in self._seen:
            return
        if obj is None or isinstance(obj, bool | str | bytes):
            self.algorithm.append(repr(obj))
            return
        if isinstance(obj, numbers.Number):
            self.numbers.append(repr(obj))
            return
        self._seen.add(id(obj))
        if isinstance(obj, Topology):
            self.topologies.append(f"{obj.name}:{tree_digest(obj)}")
        elif isinstance(obj, jax.Array | np.ndarray | np.generic):
            self.numbers.append(array_digest(obj))
        elif isinstance(obj, types.FunctionType):
            self.algorithm.append(function_name(obj))
            for cell in obj.__closure__ or ():
                try:
                    self.walk(cell.cell_contents, depth + 1)
                except ValueError:  # an empty cell
                    continue
            for default in (obj.__defaults__ or ()) + tuple((obj.__kwdefaults__ or {}).values()):
                self.walk(default, depth + 1)
        elif isinstance(obj, types.MethodType):
            self.walk(obj.__func__, depth + 1)
            self.walk(obj.__self__, depth + 1)
        elif isinstance(obj, functools.partial):
            self.walk(obj.func, depth + 1)
            for part in (*obj.args, *sorted(obj.keywords.items())):
                self.walk(part, depth + 1)
        elif isinstance(obj, dict):
            for name, value in sorted(obj.items(), key=lambda kv: repr(kv[0])):
                self.walk(name, depth + 1)
                self.walk(value, depth + 1)
        elif isinstance(obj, tuple | list):
            self.algorithm.append(type(obj).__qualname__)
            for item in obj:
                self.walk(item, depth + 1)
        elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
            self.algorithm.append(type(obj).__qualname__)
            fields = vars(obj) if hasattr(obj, "__dict__") else {}
            if dataclasses.is_dataclass(obj):
                fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            for name, value in sorted(fields.items()):
                self.walk(name, depth + 1)
                self.walk(value, depth + 1)
        else:  # builtins and C objects: their type is all that is stable across processes
            self.algorithm.append(type(obj).__qualname__)


def run_identity(
    *,
    tx: Any,
    hyper: Any,
    state: Any,
    data: Any,
    eval_data: Any,
    loss_fn: Any,
    eval_fn: Any,
    run_id: str | None,
    timing: Any = None,
) -> dict[str, str]:
    """The identity fields of a run (see the module docstring), in :data:`FIELDS` order.

    ``tx`` is the transformation (``simulate``) or the factory (``sweep``);
    ``hyper`` the sweep's batched grid (``{}`` for one run); ``state`` the
    initial :class:`~decjax.simulate.RunState`.
    """
    walker = _Walker()
    walker.walk(tx)
    grid = tree_digest(hyper) if jax.tree.leaves(hyper) else ""
    return {
        "algorithm": _text(walker.algorithm),
        "hyperparameters": _text([*walker.numbers, *([f"grid {grid}"] if grid else [])]),
        "topology": _text(walker.topologies),
        "key": tree_digest(state.key),
        "initial params": tree_digest(state.params),
        "initial optimizer state": tree_digest(state.opt_state),
        "initial model state": tree_digest(state.model_state),
        "data": tree_digest(data),
        "eval_data": tree_digest(eval_data),
        "loss_fn": function_name(loss_fn),
        "eval_fn": function_name(eval_fn),
        "timing": _timing_text(timing),
        "run_id": "None" if run_id is None else str(run_id),
    }


def _timing_text(timing: Any) -> str:
    """The time model's fields (network and compute arrays hashed), or ``"None"``."""
    if timing is None:
        return "None"
    walker = _Walker()
    walker.walk(timing)
    return _text([*walker.algorithm, *walker.numbers])
