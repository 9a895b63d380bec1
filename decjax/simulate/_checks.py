"""What ``simulate``, ``sweep`` and ``make_run`` check before anything is compiled.

Every check refuses bad input in one line naming the argument and the fix; the
functions are traced once on one worker (``jax.eval_shape``) so a wrong signature
is reported naming the function, not deep inside a compiled scan.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._closures import schedules
from decjax._validation import check_callable, check_int
from decjax.algorithms._chain import holds_algorithm
from decjax.algorithms._common import byzantine_of
from decjax.data import WorkerData
from decjax.problems import Classifier, StatefulClassifier
from decjax.simulate import checkpoint
from decjax.simulate._loop import divisor_near
from decjax.simulate._lowering import one_worker
from decjax.simulate._values import all_finite, value_range
from decjax.timing import TimeModel
from decjax.topology import Topology


def check_timing(timing, params) -> dict[str, TimeModel] | None:
    """``timing``: ``None``, a :class:`~decjax.timing.TimeModel` (recorded as ``time``) or a
    dict ``{label: TimeModel}`` (recorded as ``time_<label>``), sized for the params' ``n``."""
    if timing is None:
        return None
    if isinstance(timing, TimeModel):
        models = {"time": timing}
    elif isinstance(timing, Mapping) and timing:
        for label, model in timing.items():
            if not isinstance(label, str) or not label.replace("_", "").isalnum():
                raise ValueError(
                    f"timing labels must be letters, digits and _ (time_<label>), got {label!r}"
                )
            if not isinstance(model, TimeModel):
                raise TypeError(
                    f"timing[{label!r}] must be a decjax.timing.TimeModel, got "
                    f"{type(model).__name__}"
                )
        models = {f"time_{label}": model for label, model in timing.items()}
    else:
        raise TypeError(
            "timing must be a decjax.timing.TimeModel, a non-empty dict {label: TimeModel} or "
            f"None, got {type(timing).__name__}"
        )
    if params is not None:
        for model in models.values():
            model.check(jax.tree.leaves(params)[0].shape[0])
    return models


def check_state_topology(topology, params) -> Topology | None:
    """``mix_model_state``: ``None`` or a topology of the params' ``n``."""
    if topology is None:
        return None
    if not isinstance(topology, Topology):
        raise TypeError(
            f"mix_model_state must be a Topology or None, got {type(topology).__name__}"
        )
    if not topology.row_stochastic:
        raise ValueError(
            f"mix_model_state must average the model state: {topology.name} is not "
            "row-stochastic (a push-sum digraph's column-stochastic weights would scale "
            "BatchNorm statistics without de-biasing); use a doubly stochastic topology such "
            "as decjax.ring(n)"
        )
    if params is not None and topology.n != jax.tree.leaves(params)[0].shape[0]:
        raise ValueError(
            f"mix_model_state has n={topology.n} workers but params have "
            f"{jax.tree.leaves(params)[0].shape[0]}"
        )
    return topology


def check_model_state(model_state, n: int) -> None:
    """A stateful model's state: stacked over the ``n`` workers like the params."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(model_state)[0]:
        shape = jnp.shape(leaf)
        if not shape or shape[0] != n:
            raise ValueError(
                f"model_state{jax.tree_util.keystr(path)} must be stacked over the n={n} "
                f"workers (leading axis n), got shape {shape}; stack it like the params "
                "(decjax.simulate.replicate)"
            )


def check_against_steps(tx, steps: int) -> None:
    """What a transformation can only be checked against once the run's length is known:
    its learning-rate schedules over ``0 .. steps - 1`` (finite and ``>= 0``) and a
    synchronisation period longer than the run (it would never synchronise)."""
    arguments = getattr(tx, "arguments", {})
    for name in ("every", "average_every"):
        every = arguments.get(name)
        if isinstance(every, int) and every > steps:
            raise ValueError(
                f"{arguments['factory']}({name}={every}) never synchronises in a run of {steps} "
                f"steps: make {name} at most steps"
            )
    counts = np.arange(steps, dtype=np.int32)  # NumPy: an eager iota compiles per length
    for schedule in schedules(tx):
        try:
            values = np.asarray(jax.vmap(schedule)(counts), np.float64)
        except Exception:  # a schedule with Python control flow on the count: sample it
            picks = sorted({0, steps // 2, steps - 1})
            values = np.asarray([float(schedule(c)) for c in picks], np.float64)
            counts = np.asarray(picks)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            at = int(np.argmax(bad))
            raise ValueError(
                f"the learning-rate schedule returns {values[at]} at count {int(counts[at])}: a "
                "step size must be finite and >= 0 over the whole run"
            )


def check_run_inputs(params, data, checkpoint_dir, eval_data=None) -> None:
    """Finite floating params, finite data and evaluation data, a usable checkpoint_dir:
    refused before compiling."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params must be real floating-point arrays; leaf {jax.tree_util.keystr(path)} "
                f"has dtype {dtype} (cast with params = jax.tree.map(lambda x: x.astype("
                "jnp.float32), params))"
            )
    named = [
        (name, path, leaf)
        for name, tree in (("params", params), ("data", data), ("eval_data", eval_data))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    for (name, path, _), ok in zip(named, all_finite([leaf for *_, leaf in named]), strict=True):
        if not ok:
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} contains NaN or inf; training would "
                "diverge from the first step"
            )
    if checkpoint_dir is not None:
        checkpoint.check_directory(checkpoint_dir)


def check_params(params) -> int:
    """The number of workers ``n`` of stacked params."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a non-empty pytree stacked over workers")
    n = jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else None
    if n is None or any(jnp.ndim(x) == 0 or jnp.shape(x)[0] != n for x in leaves):
        raise ValueError(
            "params must be stacked over workers: every leaf needs the same leading axis n "
            "(use decjax.replicate(params, n) to copy one model to n workers)"
        )
    return n


def check_batches(data, n: int, batch_size: int | None) -> int | None:
    if isinstance(data, WorkerData):
        if batch_size is None:
            raise ValueError("batch_size is required when data is WorkerData (minibatches)")
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if data.n != n:
            raise ValueError(f"data is partitioned over {data.n} workers but params have n={n}")
        smallest = None if data.epoch_keys is None else int(jnp.min(data.counts))
        if smallest is not None and batch_size > smallest:
            raise ValueError(
                f"batch_size ({batch_size}) must be at most the smallest shard ({smallest}) "
                "when sampling by epochs; lower it or use sampling='replacement'"
            )
    elif batch_size is not None:
        raise ValueError(
            "batch_size applies to WorkerData only; other data is used as a full batch per "
            "step (a pytree stacked over workers)"
        )
    else:
        for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
                raise ValueError(
                    f"data (a full batch stacked over workers) needs leading axis n={n}, as "
                    f"the params; data{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}"
                )
    return batch_size


def check_functions(
    loss_fn, eval_fn, params, data, eval_data, batch_size, model_state=None
) -> tuple[tuple, tuple]:
    """Trace ``loss_fn`` and ``eval_fn`` once on one worker (``jax.eval_shape``: nothing is
    compiled) so a wrong signature or output is reported naming the function. Returns the
    one-worker arguments of each, as shapes (what a checkpoint's identity traces them on)."""
    one = one_worker(params)
    if isinstance(data, WorkerData):
        batch = jax.eval_shape(lambda x, y: (x[:batch_size], y[:batch_size]), data.x, data.y)
    else:
        batch = one_worker(data)
    if model_state is None:
        loss = _traced("loss_fn(params, batch)", loss_fn, one, batch, "")
        extra: tuple = ()
        loss_args: tuple = (one, batch)
    else:
        extra = (one_worker(model_state),)
        loss = _stateful_loss(loss_fn, one, batch, extra[0])
        loss_args = (one, batch, extra[0], jax.random.key(0))
    if not isinstance(loss, jax.ShapeDtypeStruct) or loss.shape != ():
        raise ValueError(
            f"loss_fn must return a scalar for one worker's params and batch, got "
            f"{getattr(loss, 'shape', type(loss).__name__)}"
        )
    check_model_fits(loss_fn, one, batch, data, extra)
    if eval_fn is None:
        return loss_args, ()
    hint = " (eval_data is None: pass eval_data=...)" if eval_data is None else ""
    call = "eval_fn(params, eval_data" + (", model_state)" if extra else ")")
    metrics = _traced(call, eval_fn, one, eval_data, hint, *extra)
    if not isinstance(metrics, Mapping) or any(
        not isinstance(v, jax.ShapeDtypeStruct) or v.shape != () for v in metrics.values()
    ):
        raise ValueError(
            f"eval_fn must return a dict {{name: scalar}}, got {type(metrics).__name__}"
        )
    return loss_args, (one, eval_data, *extra)


def check_model_fits(loss_fn, params, batch, data, state: tuple) -> None:
    """A decjax classifier's outputs against the data, before anything is compiled: every
    label below its number of outputs, and token ids (integer inputs) below its vocabulary.
    Out of range, the loss is NaN from the first step and the run would look diverged."""
    owner = getattr(loss_fn, "__self__", None)
    if not isinstance(owner, Classifier | StatefulClassifier) or owner.objective is not None:
        return  # a custom objective's targets need not be class labels
    x = batch[0]
    if state:
        apply: Any = owner.apply
        logits = jax.eval_shape(
            lambda p, s, x: apply(p, s, jax.random.key(0), x, False)[0], params, state[0], x
        )
    else:
        logits = jax.eval_shape(owner.apply, params, x)
    classes = logits.shape[-1]
    if isinstance(data, WorkerData):
        inputs, labels = data.x, data.y
    elif isinstance(data, tuple | list) and len(data) == 2:
        inputs, labels = data
    else:
        return
    low, top = value_range(labels)
    if low < 0 or top >= classes:
        raise ValueError(
            f"the labels go up to {top} but the model has {classes} outputs: build it for "
            f"{top + 1} classes, or fix the labels (they must be in [0, {classes}))"
        )
    if not jnp.issubdtype(jnp.result_type(inputs), jnp.integer):
        return
    top_id = value_range(inputs)[1]
    if top_id >= classes:
        raise ValueError(
            f"the token ids go up to {top_id} but the model's vocabulary has "
            f"{classes} entries: build it with vocab_size={top_id + 1}"
        )


def _stateful_loss(loss_fn, params, batch, state):
    """The loss of a stateful ``loss_fn`` traced once; its output structure checked."""
    call = "loss_fn(params, batch, model_state, key)"
    out = _traced(call, loss_fn, params, batch, "", state, jax.random.key(0))
    shaped = isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple)
    if not shaped or len(out[1]) != 2 or not isinstance(out[1][1], Mapping):
        raise ValueError(
            "with model_state, loss_fn(params, batch, model_state, key) must return "
            "(loss, (new_model_state, aux_dict)), e.g. model.loss of decjax.problems.from_nnx"
        )
    if jax.tree.structure(out[1][0]) != jax.tree.structure(state):
        raise ValueError("loss_fn must return a new model_state shaped like the one it was given")
    return out[0]


def _traced(call: str, fn, params, data, hint: str, *extra):
    """``jax.eval_shape(fn, params, data, *extra)``; a failure is reported naming ``call``."""
    try:
        return jax.eval_shape(fn, params, data, *extra)
    except Exception as err:
        raise ValueError(f"{call} fails on one worker's params{hint}: {first_line(err)}") from err


def first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def check_schedule(steps: int, eval_every: int | None, checkpointing: bool = False) -> int:
    """``eval_every`` validated; by default about 25 records per run. Steps past the last
    multiple of ``eval_every`` make one shorter, last record (not with checkpoints, which
    resume at whole records)."""
    if eval_every is None:
        eval_every = divisor_near(steps, steps / 25) if steps >= 25 else 1
    eval_every = check_int("eval_every", eval_every, minimum=1)
    if steps % eval_every and checkpointing:
        raise ValueError(
            f"with checkpoint_dir, steps ({steps}) must be a multiple of eval_every "
            f"({eval_every}): a checkpoint resumes at whole records"
        )
    return eval_every


def check_composition(tx):
    """``tx``, refused when it is an ``optax.chain`` around a decentralized algorithm."""
    if holds_algorithm(tx):  # False for an algorithm itself (decjax.chain's result too)
        raise ValueError(
            "tx is an optax.chain holding a decentralized algorithm: the chain drops the "
            "algorithm's record (bytes sent, the simulated time) and applies the "
            "transformations before it to all workers together (clip_by_global_norm would clip "
            "by their joint norm); use decjax.chain(...), which applies them per worker"
        )
    return tx


def check_callback(callback) -> None:
    """``callback(step, metrics)``: callable with two positional arguments, checked now (it
    is first called after the first chunk has been compiled and run)."""
    check_callable("callback", callback)
    try:
        inspect.signature(callback).bind(0, {})
    except TypeError as err:
        raise TypeError(f"callback must accept (step, metrics): {err}") from None
    except ValueError:  # a builtin without a signature: it will tell at its call
        return


def check_configurations(make_tx, grid, steps: int, skip: tuple[str, ...] = ("seed",)):
    """Build every configuration of a sweep's grid once with concrete values, so each
    constructor's validation (e.g. D²'s spectral condition) runs before the traced,
    vmapped build; a ``make_tx`` that does not take the grid's names is told so.

    Returns the configurations' Byzantine workers (:mod:`decjax.byzantine`; ``None``
    without), refused when they differ: every record leaves the same rows out. The grid's
    names in ``skip`` are not passed to ``make_tx`` (the seed; the privacy option's values)."""
    seen = []
    for combo in itertools.product(*(grid[k] for k in grid)):
        config = {k: v for k, v in zip(grid, combo, strict=True) if k not in skip}
        try:
            tx = make_tx(**config)
            check_against_steps(check_composition(tx), steps)
            seen.append(byzantine_of(tx))
        except TypeError as err:
            if "argument" not in str(err):  # a constructor's own TypeError: let it speak
                raise
            raise TypeError(
                f"make_tx must accept the grid's names as keywords {sorted(config)}: "
                f"{first_line(err)}"
            ) from None
    if any(b != seen[0] for b in seen):
        raise ValueError(
            "a sweep's configurations must share their Byzantine workers and attack (every "
            "record leaves the same rows out): sweep over them with separate calls"
        )
    return seen[0] if seen else None
