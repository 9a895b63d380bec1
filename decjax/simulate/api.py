"""``simulate`` (one run), ``sweep`` (a vmapped grid of runs) and ``make_run`` (the pure core).

Each door converts its keywords once into a typed ``Run`` (flat option keywords
gathered into the option objects, :func:`decjax.simulate.options.gather`); the checks
live in ``simulate/_checks.py``, the program, the grid and the two executions in
``simulate/_run.py``, and the stages of a run in ``simulate/_execute.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from decjax._validation import check_bool, check_int
from decjax.algorithms._common import byzantine_of
from decjax.privacy.clip import Clip
from decjax.simulate._lowering import AUTO
from decjax.simulate._poison import poison
from decjax.simulate._private import check_make_run
from decjax.simulate._run import Run, as_lists, program_of, run_simulation, run_sweep
from decjax.simulate.options import (
    Checkpointing,
    Evaluation,
    Execution,
    check_known,
    gather,
    gather_flat,
    keywords,
)
from decjax.simulate.result import SimulationResult
from decjax.timing import TimeModel
from decjax.topology import Topology


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
    eval_workers: bool = False,
    worker_chunks: int | str = "auto",
    steps_per_iteration: int | str = AUTO,
    evaluation: Evaluation | None = None,
    execution: Execution | None = None,
    stateful: bool = False,
    mix_model_state: Topology | None = None,
    timing: TimeModel | None = None,
    privacy: Clip | None = None,
) -> Callable:
    """The pure core of :func:`simulate`: ``run(params, key, data, eval_data=None, hyper=None)``.

    With ``stateful=True``, ``loss_fn`` is a stateful model's loss (see
    :func:`simulate`) and ``run`` takes its stacked ``model_state=`` too.

    ``run`` performs the whole training as nested ``lax.scan``-s and returns
    ``(final RunState, metrics)`` with metrics of shape ``(steps // eval_every,)``.
    It is jittable and vmappable. ``tx`` is a transformation or a factory
    ``tx(**hyper)``; vmap over the ``hyper`` dict to sweep hyperparameters
    yourself (what :func:`sweep` does, with a progress bar).

    Args:
      loss_fn: as in :func:`simulate`.
      tx: a transformation, or a factory ``tx(**hyper)`` called inside ``run``.
      steps: number of training steps (a multiple of ``eval_every``).
      batch_size: per-worker minibatch size (with ``WorkerData``).
      eval_every: steps between records (``Evaluation.every``).
      eval_fn: ``eval_fn(single_params, eval_data) -> {name: scalar}``.
      eval_workers: also evaluate every worker.
      worker_chunks: groups of workers whose gradients are computed one after another.
      steps_per_iteration: training steps per iteration of the compiled loop.
      evaluation: an :class:`~decjax.Evaluation` (without ``data``: pass it to ``run``).
      execution: an :class:`~decjax.Execution` (without ``chunks`` or ``mesh``).
      stateful: ``loss_fn`` is a stateful model's loss; ``run`` takes ``model_state=``.
      mix_model_state: gossip the model state with this topology.
      timing: a :class:`decjax.timing.TimeModel` or ``{label: it}``.
      privacy: a :class:`decjax.privacy.Clip` (DP-SGD on every worker; no ``epsilon``
        record and no ``epsilon_budget`` here: ``Clip.epsilons`` of the steps gives it).

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
    options = gather(
        (evaluation, keywords(Evaluation, eval_every, eval_fn, None, eval_workers)),
        (None, Checkpointing()),
        (execution, keywords(Execution, None, steps_per_iteration, worker_chunks, None)),
    )
    if (
        options.evaluation.data is not None
        or options.execution.chunks is not None
        or options.execution.mesh is not None
    ):
        raise ValueError(
            "make_run takes no evaluation data, chunks or mesh: pass eval_data to run(...), and "
            "jit or shard the returned function yourself"
        )
    make_tx = tx if not isinstance(tx, optax.GradientTransformation) else (lambda: tx)
    check_bool("stateful", stateful)
    check_make_run(privacy, batch_size)
    run_args = Run(
        loss_fn,
        steps,
        options,
        batch_size=batch_size,
        stateful=stateful,
        mix_model_state=mix_model_state,
        timing=timing,
        privacy=privacy,
    )
    program = program_of(make_tx, run_args)
    blocks, remainder = divmod(steps, program.eval_every)
    if remainder:  # simulate makes a shorter last record; here records stack in one array
        raise ValueError(
            f"make_run: steps ({steps}) must be a multiple of eval_every ({program.eval_every})"
        )

    def run(params, key, data, eval_data=None, hyper=None, model_state=None):
        hyper = {} if hyper is None else hyper
        data = poison(data, byzantine_of(program.make_tx(**hyper)))
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
    eval_workers: bool = False,
    worker_chunks: int | str = "auto",
    steps_per_iteration: int | str = AUTO,
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
    privacy: Clip | None = None,
) -> SimulationResult:
    """Run decentralized training: ``steps`` steps of ``tx`` on stacked ``params``.

    One ``jit``-ed ``lax.scan`` in ``chunks`` calls (one compile) with a
    progress bar. Every ``eval_every`` steps it records ``train_loss`` (mean
    over workers and steps), ``consensus_distance``, the running totals of the
    steps' records (``bytes_sent``...) and, with ``eval_fn``, ``test_<metric>``
    of the averaged model and ``worker_test_<metric>``. The flat option keywords
    are the fields of :class:`~decjax.Evaluation`, :class:`~decjax.Checkpointing`
    and :class:`~decjax.Execution`, converted into them here, once.

    Args:
      loss_fn: ``loss_fn(single_params, single_batch) -> scalar``, vmapped over workers.
      params: stacked ``(n, ...)`` initial params (see :func:`replicate`).
      tx: a decentralized transformation (e.g. :func:`decjax.dpsgd`, :func:`decjax.chain`).
      data: a :class:`decjax.data.WorkerData` (minibatches of ``batch_size`` per
        worker and step) or a pytree stacked over workers (a full batch every step).
      steps: number of training steps (a multiple of ``eval_every``).
      key: ``jax.random.key``; same key, same result; every random draw of the run varies with it.
      batch_size: per-worker minibatch size (with ``WorkerData``).
      eval_every: steps between records (``Evaluation.every``; default about 25 records).
      eval_fn: ``eval_fn(single_params, eval_data) -> {name: scalar}`` (``Evaluation.fn``).
      eval_data: e.g. ``(x_test, y_test)`` (``Evaluation.data``).
      eval_workers: also evaluate every worker (``Evaluation.workers``).
      worker_chunks: groups of workers whose gradients are computed one after another
        (``Execution.worker_chunks``; ``"auto"`` chooses by device and model).
      steps_per_iteration: training steps per iteration of the compiled loop
        (``Execution.steps_per_iteration``; ``"auto"``: 2 for a long run without a
        convolution, else 1).
      on_divergence: on a non-finite loss: ``"raise"`` (``FloatingPointError`` naming the
        step), ``"stop"`` (records up to the last finite one, ``diverged_at``) or ``"ignore"``.
      progress: show a progress bar.
      chunks: compiled calls, with the progress bar between them (``Execution.chunks``).
      checkpoint_dir: save the run here and resume from it (``Checkpointing.dir``).
      checkpoint_every: chunks between checkpoints (``Checkpointing.every``).
      run_id: a label stored in the checkpoint and compared on resume
        (``Checkpointing.run_id``).
      overwrite: start afresh over a checkpoint of another run (``Checkpointing.overwrite``).
      callback: ``callback(step, metrics)`` after every chunk (numpy records; raise to stop).
      mesh: a 1-D device mesh sharding the workers over its devices (``Execution.mesh``).
      evaluation: an :class:`~decjax.Evaluation` instead of the ``eval_*`` keywords.
      checkpointing: a :class:`~decjax.Checkpointing` instead of its four keywords.
      execution: an :class:`~decjax.Execution` instead of its four keywords.
      model_state: stacked state of a stateful model (BatchNorm; see ``docs/models.md``);
        then ``loss_fn(params, batch, state, key) -> (loss, (state, aux))``.
      mix_model_state: gossip the model state with this topology; ``None`` keeps it local.
      timing: a :class:`decjax.timing.TimeModel` (records carry ``time``) or ``{label: it}``.
      privacy: a :class:`decjax.privacy.Clip`: every worker's gradient is DP-SGD's on a
        Poisson sample of its shard (expected size ``batch_size``), and the records carry
        ``epsilon``; with ``epsilon_budget`` the run ends where the budget does.

    Returns: a :class:`SimulationResult`.

    Examples:
      >>> import jax, decjax
      >>> q = decjax.problems.quadratics(8, 4, key=jax.random.key(0))
      >>> res = decjax.simulate(q.loss, q.init_params(), decjax.dpsgd(0.1, decjax.ring(8)),
      ...                       q.data, steps=100, key=jax.random.key(1), progress=False)
      >>> res.metrics["consensus_distance"].shape
      (25,)
    """
    options = gather(
        (evaluation, keywords(Evaluation, eval_every, eval_fn, eval_data, eval_workers)),
        (
            checkpointing,
            keywords(Checkpointing, checkpoint_dir, checkpoint_every, run_id, overwrite),
        ),
        (execution, keywords(Execution, chunks, steps_per_iteration, worker_chunks, mesh)),
    )
    run = Run(
        loss_fn,
        steps,
        options,
        params=params,
        data=data,
        key=key,
        batch_size=batch_size,
        model_state=model_state,
        stateful=model_state is not None,
        mix_model_state=mix_model_state,
        timing=timing,
        progress=progress,
        callback=callback,
        privacy=privacy,
    )
    return run_simulation(run, tx, on_divergence)


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
    privacy: Clip | None = None,
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
      loss_fn: as in :func:`simulate`.
      params: stacked ``(n, ...)`` initial params, shared by every configuration.
      make_tx: ``make_tx(**config) -> GradientTransformation``.
      data: as in :func:`simulate`, shared by every configuration.
      grid: ``{name: values}``; values are numbers or ``Topology`` objects
        (all of the same ``n``); ``"seed"`` selects each run's key.
      steps: number of training steps of every configuration.
      key: ``jax.random.key`` (folded with ``seed`` when the grid has one).
      batch_size: per-worker minibatch size (with ``WorkerData``).
      model_state: stacked state of a stateful model, as in :func:`simulate`.
      mix_model_state: gossip the model state with this topology.
      timing: a :class:`decjax.timing.TimeModel` or ``{label: it}``.
      privacy: a :class:`decjax.privacy.Clip`, as in :func:`simulate`. The grid's
        ``clip_norm`` and ``noise_multiplier`` then set the option's values per
        configuration (not passed to ``make_tx``); with ``epsilon_budget`` each
        configuration stops training (keeps its state) where its budget does.
      progress: show a progress bar.
      callback: ``callback(step, metrics)`` after every chunk, metrics of shape ``(B, ...)``.
      evaluation: an :class:`~decjax.Evaluation` instead of the ``eval_*`` keywords.
      checkpointing: a :class:`~decjax.Checkpointing` instead of its four keywords.
      execution: an :class:`~decjax.Execution` instead of its four keywords.
      **options: the flat option keywords of :func:`simulate`; ``mesh=`` splits the
        configurations over this mesh's devices.

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
    run = Run(
        loss_fn,
        steps,
        gather_flat(check_known("sweep", options), evaluation, checkpointing, execution),
        params=params,
        data=data,
        key=key,
        batch_size=batch_size,
        model_state=model_state,
        stateful=model_state is not None,
        mix_model_state=mix_model_state,
        timing=timing,
        progress=progress,
        callback=callback,
        privacy=privacy,
    )
    return run_sweep(run, make_tx, as_lists(grid))
