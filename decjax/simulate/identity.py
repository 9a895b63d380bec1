"""The identity of a run, as a checkpoint records it: what must match for a resume to be honest.

Shapes alone cannot tell two runs apart (another learning rate, topology,
seed, data split, activation or algorithm variant has the same state shapes),
so a checkpoint also records, field by field:

* ``algorithm`` – the functions and options (strings, booleans) reachable from
  the transformation's closures (e.g. ``form='parallel'``, a compressor's name);
* ``hyperparameters`` – by name: every argument of the decjax factories that
  built the transformation (``learning_rate``, ``momentum``, ``order`` …; see
  :func:`decjax.algorithms.constructor`), the numbers and arrays reachable
  from its closures (by the closure variable or attribute holding them), and
  a sweep's grid by name;
* ``topology`` – every :class:`~decjax.topology.Topology` reachable from them
  (weights, neighbour lists, fault model);
* ``key``, ``initial params``, ``initial optimizer state``, ``initial model
  state`` – hashes of the run's start;
* ``data``, ``eval_data`` – hashes of the arrays (a ``WorkerData`` includes its
  shards and how it samples);
* ``loss_fn``, ``eval_fn`` – the qualified name and a hash of the computation:
  the function's jaxpr traced on one worker's params and batch, with every
  constant it closes over, so another activation, regularisation weight,
  dropout rate or augmentation is another run even under the same name;
* ``eval_workers``, ``mix_model_state`` – what is recorded, and how the model
  state is gossiped;
* ``timing`` – the time model (:mod:`decjax.timing`), whose ``time`` records a resume continues;
* ``run_id`` – the user's own label, for what no hash can see (data read from a
  file inside ``loss_fn`` at every call, say).

Each field is readable text when short and a SHA-256 digest otherwise
(``hyperparameters`` is a mapping of name to value), so a mismatch names the
first field that differs and, for hyperparameters, the first name. A jaxpr
is JAX's own text, so a checkpoint written by another JAX version may be
refused as another ``loss_fn``; ``overwrite=True`` starts afresh.
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

from decjax._closures import closure_cells
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
    "eval_workers",
    "mix_model_state",
    "timing",
    "privacy",
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
    """Collects what a transformation closes over, sorted into the identity's fields.

    Numbers, arrays and options are recorded under the name that holds them:
    a factory's argument (``tx.arguments``), a closure variable, an attribute
    or a dict key, prefixed by the names leading to them inside a factory's
    arguments (``tx.learning_rate`` for an inner optimizer's).
    """

    def __init__(self):
        self.algorithm: list[str] = []
        self.named: dict[str, str] = {}
        self.topologies: list[str] = []
        self._seen: set[int] = set()

    def _record(self, name: str, text: str) -> None:
        key, k = name or "value", 1
        while key in self.named:
            k += 1
            key = f"{name or 'value'}#{k}"
        self.named[key] = text

    def walk(
        self, obj: Any, name: str = "", depth: int = 0, prefix: str = "", argument: bool = False
    ) -> None:
        """Record ``obj`` found under ``name`` (inside the factory argument ``prefix``;
        ``argument``: ``obj`` is a factory's argument itself)."""
        if depth > _DEPTH or id(obj) in self._seen:
            return
        label = prefix + name
        if obj is None or isinstance(obj, bool | str | bytes):
            self.algorithm.append(repr(obj))
            if name and (obj is not None or argument):  # an empty closure cell says nothing
                self._record(label, repr(obj))
            return
        if isinstance(obj, numbers.Number):
            self._record(label, repr(obj))
            return
        self._seen.add(id(obj))
        self._parts(obj, name, depth, prefix, label)

    def _parts(self, obj: Any, name: str, depth: int, prefix: str, label: str) -> None:
        """Record what a composite ``obj`` holds: a topology's weights, an array's digest, a
        factory's arguments by name, a function's closure, a container's items."""

        def inner(value, key):
            self.walk(value, key, depth + 1, prefix)

        if isinstance(obj, Topology):
            self.topologies.append(f"{obj.name}:{tree_digest(obj)}")
        elif isinstance(obj, jax.Array | np.ndarray | np.generic):
            self._record(label, array_digest(obj))
        elif isinstance(getattr(obj, "arguments", None), dict):  # a decjax factory's result
            self.algorithm.append(str(obj.arguments.get("factory")))
            outer = f"{label}." if label else ""
            for key, value in obj.arguments.items():
                if key == "factory":
                    continue
                if isinstance(value, numbers.Number | str | bytes | None):
                    self.walk(value, key, depth + 1, outer, argument=True)
                else:  # what an inner optimizer or a schedule holds: tx.b1, learning_rate.decay
                    self.walk(value, "", depth + 1, f"{outer}{key}.")
            for part in obj:  # its functions (what the arguments do not say)
                inner(part, name)
        elif isinstance(obj, types.FunctionType):
            self.algorithm.append(function_name(obj))
            for var, contents in closure_cells(obj):
                inner(contents, var)
            for default in (obj.__defaults__ or ()) + tuple((obj.__kwdefaults__ or {}).values()):
                inner(default, name)
        elif isinstance(obj, types.MethodType):
            inner(obj.__func__, name)
            inner(obj.__self__, name)
        elif isinstance(obj, functools.partial):
            inner(obj.func, name)
            for part in obj.args:
                inner(part, name)
            for key, value in sorted(obj.keywords.items()):
                inner(value, key)
        elif isinstance(obj, dict):
            for key, value in sorted(obj.items(), key=lambda kv: repr(kv[0])):
                inner(key, "")
                inner(value, str(key))
        elif isinstance(obj, tuple | list):
            self.algorithm.append(type(obj).__qualname__)
            for item in obj:
                inner(item, name)
        elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
            self.algorithm.append(type(obj).__qualname__)
            fields = vars(obj) if hasattr(obj, "__dict__") else {}
            if dataclasses.is_dataclass(obj):
                fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            for key, value in sorted(fields.items()):
                inner(key, "")
                inner(value, key)
        else:  # builtins and C objects: their type is all that is stable across processes
            self.algorithm.append(type(obj).__qualname__)


def run_identity(
    *,
    tx: Any,
    hyper: Any,
    grid: Any,
    state: Any,
    data: Any,
    eval_data: Any,
    loss_fn: Any,
    loss_args: tuple,
    eval_fn: Any,
    eval_args: tuple,
    eval_workers: bool,
    mix_model_state: Any,
    run_id: str | None,
    timing: Any = None,
    privacy: Any = None,
) -> dict[str, Any]:
    """The identity fields of a run (see the module docstring), in :data:`FIELDS` order.

    ``tx`` is the transformation (``simulate``) or the factory (``sweep``);
    ``hyper`` the sweep's batched grid and ``grid`` the grid as given (``{}``
    for one run); ``state`` the initial :class:`~decjax.simulate.RunState`;
    ``loss_args`` and ``eval_args`` one worker's arguments of ``loss_fn`` and
    ``eval_fn`` (their computation is hashed on them).
    """
    walker = _Walker()
    walker.walk(tx)
    named = dict(walker.named)
    for name, values in (grid or {}).items():
        named[f"grid[{name!r}]"] = _text([_value_text(v) for v in values])
    if jax.tree.leaves(hyper):
        named["grid values"] = tree_digest(hyper)
    return {
        "algorithm": _text(walker.algorithm),
        "hyperparameters": named,
        "topology": _text(walker.topologies),
        "key": tree_digest(state.key),
        "initial params": tree_digest(state.params),
        "initial optimizer state": tree_digest(state.opt_state),
        "initial model state": tree_digest(state.model_state),
        "data": tree_digest(data),
        "eval_data": tree_digest(eval_data),
        "loss_fn": function_identity(loss_fn, loss_args),
        "eval_fn": function_identity(eval_fn, eval_args),
        "eval_workers": repr(bool(eval_workers)),
        "mix_model_state": _topology_text(mix_model_state),
        "timing": _timing_text(timing),
        "privacy": repr(privacy),
        "run_id": "None" if run_id is None else str(run_id),
    }


def function_identity(fn, args: tuple) -> str:
    """``fn``'s qualified name and a hash of what it computes on ``args``: its jaxpr (JAX's
    text of the traced computation, literals included) and every constant it closes over."""
    if fn is None:
        return "None"
    closed = jax.make_jaxpr(fn)(*args)
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for constant in closed.consts:
        digest.update(array_digest(constant).encode())
    return f"{function_name(fn)} computing {digest.hexdigest()[:16]}"


def _value_text(value: Any) -> str:
    if isinstance(value, Topology):
        return f"{value.name}:{tree_digest(value)}"
    return repr(value)


def _topology_text(topology: Any) -> str:
    return "None" if topology is None else _value_text(topology)


def _timing_text(timing: Any) -> str:
    """The time model's fields (network and compute arrays hashed), or ``"None"``."""
    if timing is None:
        return "None"
    walker = _Walker()
    walker.walk(timing)
    return _text([*walker.algorithm, *(f"{k}={v}" for k, v in walker.named.items())])
