"""``simulate`` (one run), ``sweep`` (a vmapped grid of runs) and ``make_run`` (the pure core)."""

from __future__ import annotations

import inspect
import itertools
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax import distributed
from decjax._closures import schedules
from decjax._validation import as_key, check_bool, check_callable, check_choice, check_int
from decjax.algorithms._chain import holds_algorithm
from decjax.data import WorkerData
from decjax.problems import Classifier, StatefulClassifier
from decjax.simulate import checkpoint
from decjax.simulate._execute import Layout, Saving, Schedule, SweepLayout, execute
from decjax.simulate._loop import divisor_near
from decjax.simulate._lowering import AUTO, check_worker_chunks
from decjax.simulate._program import STEPS_PER_ITERATION, Program
from decjax.simulate.identity import run_identity
from decjax.simulate.options import Checkpointing, Evaluation, Execution, flat_options, merge
from decjax.simulate.result import SimulationResult
from decjax.timing import TimeModel
from decjax.topology import Topology, stack

DIVERGENCE = ("raise", "stop", "ignore")


def _program(
    make_tx, params, data, options: Mapping[str, Any], keep_finite: bool = False
) -> tuple[int, Program]:
    """Validate a run's configuration; returns the steps and the :class:`Program`.

    ``options`` holds the arguments of ``simulate``, ``sweep`` or ``make_run``
    by name (``loss_fn``, ``steps``, ``batch_size``, ``eval_every``,
    ``eval_fn``, ``eval_workers``, ``worker_chunks``, ``steps_per_iteration``).
    ``params`` and ``data`` are checked against each other when given
    (``None`` in :func:`make_run`, which sees them only when called).
    """
    loss_fn, batch_size, eval_fn = options["loss_fn"], options["batch_size"], options["eval_fn"]
    check_callable("loss_fn", loss_fn)
    check_callable("tx", make_tx)
    steps = check_int("steps", options["steps"], minimum=1)
    check_bool("eval_workers", options["eval_workers"])
    worker_chunks = check_worker_chunks("worker_chunks", options["worker_chunks"])
    if params is not None:
        n = _check_params(params)
        if worker_chunks != AUTO and n % worker_chunks:
            raise ValueError(
                f"worker_chunks ({worker_chunks}) must divide the number of workers n={n}"
            )
        batch_size = _check_batches(data, n, batch_size)
    eval_every = _check_schedule(steps, options["eval_every"])
    if eval_fn is not None:
        check_callable("eval_fn", eval_fn)
    program = Program(
        loss_fn,
        make_tx,
        batch_size,
        eval_every,
        eval_fn,
        options["eval_workers"],
        worker_chunks,
        check_int("steps_per_iteration", options["steps_per_iteration"], minimum=1),
        keep_finite,
        options.get("model_state") is not None or bool(options.get("stateful")),
        _check_state_topology(options.get("mix_model_state"), params),
        _check_timing(options.get("timing"), params),
    )
    return steps, program


def _check_timing(timing, params) -> dict[str, TimeModel] | None:
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


def _check_state_topology(topology, params) -> Topology | None:
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


def _check_model_state(model_state, n: int) -> None:
    """A stateful model's state: stacked over the ``n`` workers like the params."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(model_state)[0]:
        shape = jnp.shape(leaf)
        if not shape or shape[0] != n:
            raise ValueError(
                f"model_state{jax.tree_util.keystr(path)} must be stacked over the n={n} "
                f"workers (leading axis n), got shape {shape}; stack it like the params "
                "(decjax.simulate.replicate)"
            )


def _check_against_steps(tx, steps: int) -> None:
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
    counts = jnp.arange(steps)
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


def _check_run_inputs(params, data, checkpoint_dir, eval_data=None) -> None:
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
    for name, tree in (("params", params), ("data", data), ("eval_data", eval_data)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) and not bool(
                jnp.all(jnp.isfinite(leaf))
            ):
                raise ValueError(
                    f"{name}{jax.tree_util.keystr(path)} contains NaN or inf; training would "
                    "diverge from the first step"
                )
    if checkpoint_dir is not None:
        checkpoint.check_directory(checkpoint_dir)


def _check_params(params) -> int:
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


def _check_batches(data, n: int, batch_size: int | None) -> int | None:
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


def _check_functions(
    loss_fn, eval_fn, params, data, eval_data, batch_size, model_state=None
) -> tuple[tuple, tuple]:
    """Trace ``loss_fn`` and ``eval_fn`` once on one worker (``jax.eval_shape``: nothing is
    compiled) so a wrong signature or output is reported naming the function. Returns the
    one-worker arguments of each (what a checkpoint's identity hashes them on)."""
    one = jax.tree.map(lambda x: x[0], params)
    if isinstance(data, WorkerData):
        batch = (data.x[:batch_size], data.y[:batch_size])
    else:
        batch = jax.tree.map(lambda x: x[0], data)
    if model_state is None:
        loss = _traced("loss_fn(params, batch)", loss_fn, one, batch, "")
        extra = ()
        loss_args = (one, batch)
    else:
        extra = (jax.tree.map(lambda x: x[0], model_state),)
        loss = _stateful_loss(loss_fn, one, batch, extra[0])
        loss_args = (one, batch, extra[0], jax.random.key(0))
    if not isinstance(loss, jax.ShapeDtypeStruct) or loss.shape != ():
        raise ValueError(
            f"loss_fn must return a scalar for one worker's params and batch, got "
            f"{getattr(loss, 'shape', type(loss).__name__)}"
        )
    _check_model_fits(loss_fn, one, batch, data, extra)
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


def _check_model_fits(loss_fn, params, batch, data, state: tuple) -> None:
    """A decjax classifier's outputs against the data, before anything is compiled: every
    label below its number of outputs, and token ids (integer inputs) below its vocabulary.
    Out of range, the loss is NaN from the first step and the run would look diverged."""
    owner = getattr(loss_fn, "__self__", None)
    if not isinstance(owner, Classifier | StatefulClassifier):
        return
    x = batch[0]
    if state:
        logits = jax.eval_shape(
            lambda p, s, x: owner.apply(p, s, jax.random.key(0), x, False)[0], params, state[0], x
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
    top = int(jnp.max(labels))
    if int(jnp.min(labels)) < 0 or top >= classes:
        raise ValueError(
            f"the labels go up to {top} but the model has {classes} outputs: build it for "
            f"{top + 1} classes, or fix the labels (they must be in [0, {classes}))"
        )
    if jnp.issubdtype(jnp.result_type(inputs), jnp.integer) and int(jnp.max(inputs)) >= classes:
        raise ValueError(
            f"the token ids go up to {int(jnp.max(inputs))} but the model's vocabulary has "
            f"{classes} entries: build it with vocab_size={int(jnp.max(inputs)) + 1}"
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
        raise ValueError(f"{call} fails on one worker's params{hint}: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _check_schedule(steps: int, eval_every: int | None) -> int:
    """``eval_every`` validated; by default about 25 records per run."""
    if eval_every is None:
        eval_every = divisor_near(steps, steps / 25) if steps >= 25 else 1
    eval_every = check_int("eval_every", eval_every, minimum=1)
    if steps % eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every})")
    return eval_every


def replicate(params: Any, n: int) -> Any:
    """Copy one model to ``n`` workers: every leaf gets a leading axis of size ``n``.

    Examples:
      >>> import jax.numpy as jnp, decjax
      >>> decjax.replicate({"w": jnp.ones(3)}, 4)["w"].shape
      (4, 3)
    """
    n = check_int("n", n, minimum=1)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), params)


def make_run(
    loss_fn: Callable,
    tx: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    *,
    steps: int,
    batch_size: int | None = None,
    eval_every: int | None = None,
    eval_fn: Callable | None = None,
    eval_workers: bool = True,
    worker_chunks: int | str = "auto",
    steps_per_iteration: int = STEPS_PER_ITERATION,
    evaluation: Evaluation | None = None,
    execution: Execution | None = None,
    stateful: bool = False,
    mix_model_state: Topology | None = None,
    timing: TimeModel | None = None,
) -> Callable:
    """The pure core of :func:`simulate`: ``run(params, key, data, eval_data=None, hyper=None)``.

    With ``stateful=True``, ``loss_fn`` is a stateful model's loss (see
    :func:`simulate`) and ``run`` takes its stacked ``model_state=`` too.

    ``run`` performs the whole training as nested ``lax.scan``-s and returns
    ``(final RunState, metrics)`` with metrics of shape ``(steps // eval_every,)``.
    It is jittable and vmappable. ``tx`` is a transformation or a factory
    ``tx(**hyper)``; vmap over the ``hyper`` dict to sweep hyperparameters
    yourself (what :func:`sweep` does, with a progress bar).

    Examples:
      >>> import jax, jax.numpy as jnp, decjax
      >>> q = decjax.problems.quadratics(4, 2, key=jax.random.key(0))
      >>> run = decjax.make_run(q.loss, lambda lr: decjax.dpsgd(lr, decjax.ring(4)), steps=50)
      >>> runs = jax.jit(jax.vmap(run, in_axes=(None, None, None, None, 0)))
      >>> state, metrics = runs(q.init_params(), jax.random.key(1), q.data, None,
      ...                       {"lr": jnp.array([0.1, 0.2])})
      >>> metrics["train_loss"].shape
      (2, 25)
    """
    o = merge(locals(), evaluation=evaluation, execution=execution)  # objects -> keywords
    if (
        o.pop("eval_data", None) is not None
        or o.pop("chunks", None) is not None
        or o.pop("mesh", None)
    ):
        raise ValueError(
            "make_run takes no evaluation data, chunks or mesh: pass eval_data to run(...), and "
            "jit or shard the returned function yourself"
        )
    make_tx = tx if not isinstance(tx, optax.GradientTransformation) else (lambda: tx)
    steps, program = _program(make_tx, None, None, o)
    blocks = steps // program.eval_every

    def run(params, key, data, eval_data=None, hyper=None, model_state=None):
        hyper = {} if hyper is None else hyper
        state = program.init(params, key, hyper, model_state)
        return program.chunk(state, data, eval_data, hyper, blocks=blocks)

    return run


def simulate(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    tx: optax.GradientTransformation,
    data: Any,
    *,
    steps: int,
    key: jax.Array,
    batch_size: int | None = None,
    eval_every: int | None = None,
    eval_fn: Callable[[Any, Any], dict] | None = None,
    eval_data: Any = None,
    eval_workers: bool = True,
    worker_chunks: int | str = "auto",
    steps_per_iteration: int = STEPS_PER_ITERATION,
    on_divergence: str = "raise",
    progress: bool = True,
    chunks: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    run_id: str | None = None,
    overwrite: bool = False,
    callback: Callable[[int, dict], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    evaluation: Evaluation | None = None,
    checkpointing: Checkpointing | None = None,
    execution: Execution | None = None,
    model_state: Any = None,
    mix_model_state: Topology | None = None,
    timing: TimeModel | None = None,
) -> SimulationResult:
    """Run decentralized training: ``steps`` steps of ``tx`` on stacked ``params``.

    One ``jit``-ed ``lax.scan`` in ``chunks`` calls (one compile) with a
    progress bar. Every ``eval_every`` steps it records ``train_loss`` (mean
    over workers and steps), ``consensus_distance``, the running totals of the
    steps' records (``bytes_sent``...) and, with ``eval_fn``, ``test_<metric>``
    of the averaged model and ``worker_test_<metric>``. The other keywords are
    the option objects' fields: ``eval_every``, ``eval_workers``
    (:class:`~decjax.Evaluation`); ``checkpoint_dir``, ``checkpoint_every``,
    ``run_id``, ``overwrite`` (:class:`~decjax.Checkpointing`: save, resume
    bitwise); ``chunks``, ``steps_per_iteration``, ``worker_chunks``, ``mesh``
    (:class:`~decjax.Execution`; ``mesh`` shards the workers over devices).

    Args:
      loss_fn: ``loss_fn(single_params, single_batch) -> scalar``, vmapped over workers.
      params: stacked ``(n, ...)`` initial params (see :func:`replicate`).
      tx: a decentralized transformation (e.g. :func:`decjax.dpsgd`).
      data: a :class:`decjax.data.WorkerData` (minibatches of ``batch_size`` per
        worker and step) or a pytree stacked over workers (a full batch every step).
      steps: number of training steps (a multiple of ``eval_every``).
      key: ``jax.random.key``; same key, same result; every random draw of the run varies with it.
      batch_size: per-worker minibatch size (with ``WorkerData``).
      eval_fn: ``eval_fn(single_params, eval_data) -> {name: scalar}``.
      eval_data: e.g. ``(x_test, y_test)``.
      on_divergence: on a non-finite loss: ``"raise"`` (``FloatingPointError`` naming the
        step), ``"stop"`` (records up to the last finite one, ``diverged_at``) or ``"ignore"``.
      progress: show a progress bar.
      callback: ``callback(step, metrics)`` after every chunk (numpy records; raise to stop).
      evaluation: an :class:`~decjax.Evaluation` instead of the ``eval_*`` keywords.
      checkpointing: a :class:`~decjax.Checkpointing` instead of its four keywords.
      execution: an :class:`~decjax.Execution` instead of its four keywords.
      model_state: stacked state of a stateful model (BatchNorm; see ``docs/models.md``);
        then ``loss_fn(params, batch, state, key) -> (loss, (state, aux))``.
      mix_model_state: gossip the model state with this topology; ``None`` keeps it local.
      timing: a :class:`decjax.timing.TimeModel` (records carry ``time``) or ``{label: it}``.

    Returns: a :class:`SimulationResult`.

    Examples:
      >>> import jax, decjax
      >>> q = decjax.problems.quadratics(8, 4, key=jax.random.key(0))
      >>> res = decjax.simulate(q.loss, q.init_params(), decjax.dpsgd(0.1, decjax.ring(8)),
      ...                       q.data, steps=100, key=jax.random.key(1), progress=False)
      >>> res.metrics["consensus_distance"].shape
      (25,)
    """
    return _simulate(
        SimpleNamespace(**merge(locals(), **_objects(evaluation, checkpointing, execution)))
    )


def _check_composition(tx):
    """``tx``, refused when it is an ``optax.chain`` around a decentralized algorithm."""
    if holds_algorithm(tx):  # False for an algorithm itself (decjax.chain's result too)
        raise ValueError(
            "tx is an optax.chain holding a decentralized algorithm: the chain drops the "
            "algorithm's record (bytes sent, the simulated time) and applies the "
            "transformations before it to all workers together (clip_by_global_norm would clip "
            "by their joint norm); use decjax.chain(...), which applies them per worker"
        )
    return tx


def _simulate(a: SimpleNamespace) -> SimulationResult:
    """:func:`simulate` on its arguments ``a`` (option objects already unpacked)."""
    if not isinstance(a.tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(a.tx).__name__}")
    check_choice("on_divergence", a.on_divergence, DIVERGENCE)
    _check_composition(a.tx)
    steps, program, schedule, key = _prepare(a, lambda: a.tx, a.on_divergence == "stop")
    _check_against_steps(a.tx, steps)
    state = program.init(a.params, key, {}, a.model_state)
    return execute(
        program,
        state,
        a.data,
        a.eval_data,
        {},
        Layout(n=jax.tree.leaves(a.params)[0].shape[0], mesh=a.mesh),
        schedule,
        steps=steps,
        configs=None,
        progress=a.progress,
        on_divergence=a.on_divergence,
        saving=_saving(a, a.tx, {}, state),
        callback=a.callback,
    )


def sweep(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    make_tx: Callable[..., optax.GradientTransformation],
    data: Any,
    grid: Mapping[str, Sequence[Any]],
    *,
    steps: int,
    key: jax.Array,
    batch_size: int | None = None,
    model_state: Any = None,
    mix_model_state: Topology | None = None,
    timing: TimeModel | None = None,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    evaluation: Evaluation | None = None,
    checkpointing: Checkpointing | None = None,
    execution: Execution | None = None,
    **options: Any,
) -> SimulationResult:
    """Run every configuration of a hyperparameter grid at once: one ``vmap``, one compile.

    The Cartesian product of ``grid`` is flattened into ``B`` configurations
    and the whole run (the same program as :func:`simulate`) is vmapped over
    them. ``make_tx(**config)`` builds each configuration's transformation from
    traced values, so learning rates, momenta and same-size topologies (stacked
    as dense matrices, see :func:`decjax.topology.stack`) share one compiled
    program. The key ``"seed"``, if present, is not passed to ``make_tx``: it
    selects the run's key (``jax.random.fold_in(key, seed)``), for error bars;
    the run's key varies every random draw of the run (minibatches, epoch
    orders, dropout, the algorithm's keys, faults, random graphs, the clock's
    draws; see ``docs/simulate.md``).
    Without it every configuration runs with ``key`` itself, so each agrees
    with ``simulate(..., key=key)`` of the same configuration (same
    minibatches) to float32 rounding.

    ``make_tx`` is first called once per configuration with concrete values
    (so constructors validate every configuration before anything is
    compiled), then once more with traced values inside the vmap.

    A diverging configuration does not stop the others: its metrics become
    non-finite and ``result.diverged`` marks it. The run ends early only if
    every configuration has diverged.

    With ``mesh`` (a 1-D mesh, e.g. :func:`decjax.distributed.worker_mesh`)
    the configurations are split over its devices, each device running its
    share of the vmapped runs with no communication between devices; this
    also works across processes. The grid is padded with copies of its last
    configuration up to a multiple of the number of devices, and the copies
    are dropped from the result.

    The other arguments are as in :func:`simulate`; its flat option keywords
    (``eval_every=``, ``eval_fn=``, ``eval_data=``, ``mesh=``, ``chunks=``,
    ``checkpoint_dir=`` …) are accepted as ``**options``.

    Args:
      make_tx: ``make_tx(**config) -> GradientTransformation``.
      grid: ``{name: values}``; values are numbers or ``Topology`` objects
        (all of the same ``n``).
      **options: flat option keywords; ``mesh=`` splits the configurations
        over this mesh's devices.

    Returns:
      A :class:`SimulationResult` whose metrics have shape ``(B, E)`` and whose
      ``configs`` lists the ``B`` configurations (topologies by name).

    Examples:
      >>> import jax, decjax
      >>> q = decjax.problems.quadratics(8, 4, key=jax.random.key(0))
      >>> res = decjax.sweep(q.loss, q.init_params(),
      ...                    lambda learning_rate, topology: decjax.dpsgd(learning_rate, topology),
      ...                    q.data, {"learning_rate": [0.05, 0.1],
      ...                             "topology": [decjax.ring(8), decjax.complete(8)]},
      ...                    steps=100, key=jax.random.key(1), progress=False)
      >>> res.metrics["train_loss"].shape, res.traces
      ((4, 25), 1)
    """
    given = {name: value for name, value in locals().items() if name != "options"}
    flat = {**given, **flat_options("sweep", options)}
    return _sweep(SimpleNamespace(**merge(flat, **_objects(evaluation, checkpointing, execution))))


def _sweep(a: SimpleNamespace) -> SimulationResult:
    """:func:`sweep` on its arguments ``a`` (option objects already unpacked)."""
    check_callable("make_tx", a.make_tx)
    steps, program, schedule, key = _prepare(a, a.make_tx, False)
    if isinstance(a.grid, Mapping):  # a numpy array of values stands for its elements
        a.grid = {
            k: v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 else v
            for k, v in a.grid.items()
        }
    hyper, configs, seeds = _grid(a.grid, jax.tree.leaves(a.params)[0].shape[0])
    # Build every configuration once with concrete values, so each constructor's
    # validation (e.g. D²'s spectral condition) runs before the traced, vmapped build.
    for combo in itertools.product(*(a.grid[k] for k in a.grid)):
        config = {k: v for k, v in zip(a.grid, combo, strict=True) if k != "seed"}
        try:
            _check_against_steps(_check_composition(a.make_tx(**config)), steps)
        except TypeError as err:
            if "argument" not in str(err):  # a constructor's own TypeError: let it speak
                raise
            raise TypeError(
                f"make_tx must accept the grid's names as keywords {sorted(config)}: "
                f"{_first_line(err)}"
            ) from None
    if "seed" in a.grid:
        keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(seeds)
    else:  # the key simulate would use, for every configuration
        keys = jnp.broadcast_to(key, (len(configs), *jnp.shape(key)))
    batch = len(configs)
    if a.mesh is not None:
        # pad to a multiple of the devices with copies of the last configuration
        devices = distributed.mesh_size(a.mesh)
        batch = -(-batch // devices) * devices
        last = np.minimum(np.arange(batch), len(configs) - 1)
        hyper, keys = jax.tree.map(lambda x: x[last], (hyper, keys))
    params_b, model_b = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (batch, *jnp.shape(x))), (a.params, a.model_state)
    )
    state = jax.jit(jax.vmap(program.init))(params_b, keys, hyper, model_b)
    n = jax.tree.leaves(a.params)[0].shape[0]
    return execute(
        program,
        state,
        a.data,
        a.eval_data,
        hyper,
        SweepLayout(n=n, mesh=a.mesh, runs=len(configs), padded=batch),
        schedule,
        steps=steps,
        configs=configs,
        progress=a.progress,
        on_divergence="stop",
        saving=_saving(a, a.make_tx, hyper, state),
        callback=a.callback,
    )


def _prepare(a: SimpleNamespace, make_tx, keep_finite: bool):
    """Validate a run's arguments before anything is traced: ``(steps, program, schedule, key)``."""
    steps, program = _program(make_tx, a.params, a.data, vars(a), keep_finite)
    _check_run_inputs(a.params, a.data, a.checkpoint_dir, a.eval_data)
    if a.model_state is not None:
        _check_model_state(a.model_state, jax.tree.leaves(a.params)[0].shape[0])
    a.loss_args, a.eval_args = _check_functions(
        a.loss_fn, a.eval_fn, a.params, a.data, a.eval_data, program.batch_size, a.model_state
    )
    schedule = Schedule.of(steps, program.eval_every, a.chunks)
    Saving(a.checkpoint_dir, a.checkpoint_every)  # validated before anything is hashed
    check_bool("progress", a.progress)
    check_bool("overwrite", a.overwrite)
    if a.callback is not None:
        _check_callback(a.callback)
    return steps, program, schedule, as_key("key", a.key)


def _check_callback(callback) -> None:
    """``callback(step, metrics)``: callable with two positional arguments, checked now (it
    is first called after the first chunk has been compiled and run)."""
    check_callable("callback", callback)
    try:
        inspect.signature(callback).bind(0, {})
    except TypeError as err:
        raise TypeError(f"callback must accept (step, metrics): {err}") from None
    except ValueError:  # a builtin without a signature: it will tell at its call
        return


def _saving(a: SimpleNamespace, tx, hyper, state) -> Saving:
    """How the run checkpoints, with its identity (hashed only when it checkpoints)."""
    if a.run_id is not None and not isinstance(a.run_id, str):
        raise TypeError(f"run_id must be a str or None, got {type(a.run_id).__name__}")
    identity = None
    if a.checkpoint_dir is not None:
        identity = run_identity(
            tx=tx,
            hyper=hyper,
            grid=getattr(a, "grid", None),
            state=state,
            data=a.data,
            eval_data=a.eval_data,
            loss_fn=a.loss_fn,
            loss_args=a.loss_args,
            eval_fn=a.eval_fn,
            eval_args=a.eval_args,
            eval_workers=a.eval_workers,
            mix_model_state=a.mix_model_state,
            run_id=a.run_id,
            timing=a.timing,
        )
    return Saving(a.checkpoint_dir, a.checkpoint_every, identity, a.overwrite)


def _objects(evaluation, checkpointing, execution) -> dict:
    return {"evaluation": evaluation, "checkpointing": checkpointing, "execution": execution}


def _grid(grid: Mapping[str, Sequence[Any]], n: int):
    """Flatten a grid into batched hyperparameters, readable configs and seeds."""
    if not isinstance(grid, Mapping) or not grid:
        raise TypeError("grid must be a non-empty mapping {name: sequence of values}")
    names = list(grid)
    for name in names:
        values = grid[name]
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
        kinds = {isinstance(v, Topology) for v in values}
        if kinds == {True}:
            if any(v.n != n for v in values):
                raise ValueError(f"grid[{name!r}]: every topology must have n={n} workers")
        elif not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise TypeError(
                f"grid[{name!r}] must hold only numbers or only Topology objects, got {values!r}"
            )
        if kinds != {True}:
            outside = [v for v in values if not abs(v) <= float(np.finfo(np.float32).max)]
            if outside:
                raise ValueError(
                    f"grid[{name!r}] holds {outside[0]!r}, outside float32's range (the grid "
                    "is swept as float32 values)"
                )
        if name == "seed" and not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise ValueError(f"grid['seed'] must hold integers >= 0, got {values!r}")
    combos = list(itertools.product(*(range(len(grid[k])) for k in names)))
    index = {k: np.array([c[i] for c in combos]) for i, k in enumerate(names)}
    hyper = {}
    for k in names:
        if k == "seed":
            continue
        values = grid[k]
        if isinstance(values[0], Topology):
            stacked = stack(values)
            hyper[k] = jax.tree.map(lambda w, idx=index[k]: w[idx], stacked)
        else:
            hyper[k] = jnp.asarray(np.asarray(values, dtype=np.float32)[index[k]])
    configs = [
        {
            k: (grid[k][c[i]].name if isinstance(grid[k][c[i]], Topology) else grid[k][c[i]])
            for i, k in enumerate(names)
        }
        for c in combos
    ]
    seeds = jnp.asarray(
        [grid["seed"][c[names.index("seed")]] if "seed" in grid else 0 for c in combos],
        dtype=jnp.uint32,
    )
    return hyper, configs, seeds
