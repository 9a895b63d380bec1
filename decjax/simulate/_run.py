"""A run's arguments as one typed record, checked, prepared and executed.

The doors (``simulate``, ``sweep``, ``make_run``) convert their keywords once into a
:class:`Run` (the option objects already gathered); everything after reads its fields.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decjax import distributed
from decjax._validation import as_key, check_bool, check_callable, check_choice, check_int
from decjax.algorithms._common import byzantine_of
from decjax.privacy.clip import GRID_KEYS
from decjax.simulate import _checks as checks
from decjax.simulate._execute import Layout, Saving, SweepLayout, execute
from decjax.simulate._lowering import AUTO, check_worker_chunks
from decjax.simulate._poison import poison
from decjax.simulate._private import (
    PRIVACY_STEPS,
    check_privacy,
    privacy_of_configs,
    record_epsilon,
)
from decjax.simulate._program import Program, TxFactory
from decjax.simulate._schedule import Schedule
from decjax.simulate.identity import run_identity
from decjax.simulate.options import Options
from decjax.simulate.result import SimulationResult
from decjax.topology import Topology, stack

DIVERGENCE = ("raise", "stop", "ignore")


@dataclass(frozen=True)
class Run:
    """One run's arguments, typed: what a door was given, its option objects gathered.

    ``params``, ``data`` and ``key`` are ``None`` in :func:`~decjax.make_run`, which
    sees them only when its ``run`` is called; ``stateful`` says whether ``loss_fn`` is
    a stateful model's loss (``model_state`` given, or ``make_run(stateful=True)``).
    """

    loss_fn: Callable
    steps: int
    options: Options
    params: Any = None
    data: Any = None
    key: Any = None
    batch_size: int | None = None
    model_state: Any = None
    stateful: bool = False
    mix_model_state: Topology | None = None
    timing: Any = None
    progress: bool = True
    callback: Callable[[int, dict], None] | None = None
    privacy: Any = None  # a decjax.privacy.Clip


@dataclass(frozen=True)
class Prepared:
    """A checked run, ready to execute: its program, schedule and key, and the one-worker
    arguments its functions were traced on (what a checkpoint's identity hashes)."""

    steps: int
    program: Program
    schedule: Schedule
    key: jax.Array
    loss_args: tuple
    eval_args: tuple


def program_of(make_tx: TxFactory, run: Run, keep_finite: bool = False) -> Program:
    """The :class:`Program` of ``run``, its configuration validated. ``run.params`` and
    ``run.data`` are checked against each other when given (not in ``make_run``)."""
    evaluation, execution = run.options.evaluation, run.options.execution
    check_callable("loss_fn", run.loss_fn)
    check_callable("tx", make_tx)
    steps = check_int("steps", run.steps, minimum=1)
    worker_chunks = check_worker_chunks("worker_chunks", execution.worker_chunks)
    batch_size = run.batch_size
    if run.params is not None:
        n = checks.check_params(run.params)
        if worker_chunks != AUTO and n % int(worker_chunks):
            raise ValueError(
                f"worker_chunks ({worker_chunks}) must divide the number of workers n={n}"
            )
        batch_size = checks.check_batches(run.data, n, batch_size)
    return Program(
        loss_fn=run.loss_fn,
        make_tx=make_tx,
        batch_size=batch_size,
        eval_every=checks.check_schedule(
            steps, evaluation.every, run.options.checkpointing.dir is not None
        ),
        eval_fn=evaluation.fn,
        eval_workers=evaluation.workers,
        worker_chunks=worker_chunks,
        steps_per_iteration=execution.steps_per_iteration,
        run_steps=steps,
        keep_finite=keep_finite,
        stateful=run.stateful,
        state_topology=checks.check_state_topology(run.mix_model_state, run.params),
        timing=checks.check_timing(run.timing, run.params),
        lowering=execution.lowering,
        privacy=run.privacy,
    )


def prepare(run: Run, make_tx: TxFactory, keep_finite: bool) -> Prepared:
    """Validate a run before anything is traced: its program, schedule and key."""
    program = program_of(make_tx, run, keep_finite)
    evaluation, checkpointing = run.options.evaluation, run.options.checkpointing
    checks.check_run_inputs(run.params, run.data, checkpointing.dir, evaluation.data)
    if run.model_state is not None:
        checks.check_model_state(run.model_state, jax.tree.leaves(run.params)[0].shape[0])
    loss_args, eval_args = checks.check_functions(
        run.loss_fn,
        evaluation.fn,
        run.params,
        run.data,
        evaluation.data,
        program.batch_size,
        run.model_state,
    )
    schedule = Schedule.of(run.steps, program.eval_every, run.options.execution.chunks)
    check_bool("progress", run.progress)
    if run.callback is not None:
        checks.check_callback(run.callback)
    key = as_key("key", run.key)
    return Prepared(run.steps, program, schedule, key, loss_args, eval_args)


def saving(run: Run, ready: Prepared, tx, hyper, state, grid=None) -> Saving:
    """How the run checkpoints, with its identity (hashed only when it checkpoints)."""
    checkpointing, evaluation = run.options.checkpointing, run.options.evaluation
    identity = None
    if checkpointing.dir is not None:
        identity = run_identity(
            tx=tx,
            hyper=hyper,
            grid=grid,
            state=state,
            data=run.data,
            eval_data=evaluation.data,
            loss_fn=run.loss_fn,
            loss_args=ready.loss_args,
            eval_fn=evaluation.fn,
            eval_args=ready.eval_args,
            eval_workers=evaluation.workers,
            mix_model_state=run.mix_model_state,
            run_id=checkpointing.run_id,
            timing=run.timing,
            privacy=run.privacy,
        )
    return Saving(checkpointing.dir, checkpointing.every, identity, checkpointing.overwrite)


def as_lists(grid: Any) -> Any:
    """A grid whose 1-D numpy arrays of values stand for lists of their elements."""
    if not isinstance(grid, Mapping):
        return grid
    return {
        k: v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 else v for k, v in grid.items()
    }


def flatten_grid(grid: Mapping[str, Sequence[Any]], n: int):
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
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 0
            for v in values
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


def run_simulation(run: Run, tx, on_divergence: str) -> SimulationResult:
    """:func:`~decjax.simulate` of a converted :class:`Run`."""
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    check_choice("on_divergence", on_divergence, DIVERGENCE)
    checks.check_composition(tx)
    run = replace(run, data=poison(run.data, byzantine_of(tx)))
    rate = check_privacy(
        run.privacy, run.data, run.batch_size, run.model_state, _workers(run.params)
    )
    if run.privacy is not None:  # the run ends where its budget does
        run = replace(
            run, steps=run.privacy.steps_allowed(check_int("steps", run.steps, minimum=1), rate)
        )
    ready = prepare(run, lambda: tx, on_divergence == "stop")
    checks.check_against_steps(tx, ready.steps)
    state = ready.program.init(run.params, ready.key, {}, run.model_state)
    result = execute(
        ready.program,
        state,
        run.data,
        run.options.evaluation.data,
        {},
        Layout(n=jax.tree.leaves(run.params)[0].shape[0], mesh=run.options.execution.mesh),
        ready.schedule,
        steps=ready.steps,
        configs=None,
        progress=run.progress,
        on_divergence=on_divergence,
        saving=saving(run, ready, tx, {}, state),
        callback=run.callback,
    )
    if run.privacy is None:
        return result
    return record_epsilon(result, [run.privacy], rate, [ready.steps])


def run_sweep(run: Run, make_tx, grid) -> SimulationResult:
    """:func:`~decjax.sweep` of a converted :class:`Run`."""
    check_callable("make_tx", make_tx)
    ready = prepare(run, make_tx, False)
    n = jax.tree.leaves(run.params)[0].shape[0]
    hyper, configs, seeds = flatten_grid(grid, n)
    rate = check_privacy(
        run.privacy, run.data, run.batch_size, run.model_state, _workers(run.params)
    )
    clips, allowed = privacy_of_configs(run.privacy, configs, ready.steps, rate)
    if any(a < ready.steps for a in allowed):
        hyper[PRIVACY_STEPS] = jnp.asarray(allowed, jnp.int32)
    skip = ("seed", *GRID_KEYS) if run.privacy is not None else ("seed",)
    run = replace(
        run,
        data=poison(run.data, checks.check_configurations(make_tx, grid, ready.steps, skip)),
    )
    if "seed" in grid:
        keys = jax.vmap(lambda s: jax.random.fold_in(ready.key, s))(seeds)
    else:  # the key simulate would use, for every configuration
        keys = jnp.broadcast_to(ready.key, (len(configs), *jnp.shape(ready.key)))
    batch, mesh = len(configs), run.options.execution.mesh
    if mesh is not None:
        # pad to a multiple of the devices with copies of the last configuration
        devices = distributed.mesh_size(mesh)
        batch = -(-batch // devices) * devices
        last = np.minimum(np.arange(batch), len(configs) - 1)
        hyper, keys = jax.tree.map(lambda x: x[last], (hyper, keys))
    params_b, model_b = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (batch, *jnp.shape(x))), (run.params, run.model_state)
    )
    state = jax.jit(jax.vmap(ready.program.init))(params_b, keys, hyper, model_b)
    result = execute(
        ready.program,
        state,
        run.data,
        run.options.evaluation.data,
        hyper,
        SweepLayout(n=n, mesh=mesh, runs=len(configs), padded=batch),
        ready.schedule,
        steps=ready.steps,
        configs=configs,
        progress=run.progress,
        on_divergence="stop",
        saving=saving(run, ready, make_tx, hyper, state, grid),
        callback=run.callback,
    )
    if run.privacy is None:
        return result
    return record_epsilon(result, clips, rate, allowed)


def _workers(params) -> int | None:
    """The params' leading axis (``None`` for params the checks will refuse)."""
    leaves = jax.tree.leaves(params)
    return leaves[0].shape[0] if leaves and jnp.ndim(leaves[0]) > 0 else None
