"""Executing a :class:`Program` in stages: place → resume → compile → run chunks → collect.

``simulate`` and ``sweep`` differ in one place only, their :class:`Layout`:
a single run keeps the workers on the leading axis (split over a mesh by
role), a sweep has its configurations there (split over a mesh, each device
running its share). Everything else — chunking, checkpoints, divergence,
progress, the result — is shared.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import numpy as np

from decjax import distributed
from decjax._validation import check_callable, check_int
from decjax.simulate import checkpoint
from decjax.simulate._diagnosis import diverged_message, mismatch
from decjax.simulate._loop import run_chunks
from decjax.simulate._lowering import AUTO
from decjax.simulate._program import NONFINITE_STEP, Program, RunState
from decjax.simulate._schedule import Schedule
from decjax.simulate.result import SimulationResult

P = jax.sharding.PartitionSpec


@dataclass(frozen=True)
class Saving:
    """Where and how often a run saves itself, and the identity a resume must match."""

    directory: str | os.PathLike | None = None
    every: int = 1
    identity: dict | None = None
    overwrite: bool = False

    def __post_init__(self):
        check_int("checkpoint_every", self.every, minimum=1)


@dataclass(frozen=True)
class Layout:
    """A single run: workers on the leading axis; on a mesh, placed by role.

    Immutable: :meth:`place` returns the placed layout (with the partition specs of the
    run's state, data and evaluation data) beside the placed arrays.
    """

    n: int
    mesh: Any = None
    specs: Any = None
    data_specs: Any = None
    eval_specs: Any = None
    batched: ClassVar[bool] = False
    desc: ClassVar[str] = "simulate"

    def place(self, program: Program, state, data, eval_data, hyper):
        """``(layout, state, data, eval_data, hyper)`` placed for the compiled chunks: new
        global arrays (the caller's buffers stay valid) and the layout that knows their specs."""
        if self.mesh is None:
            # the chunks donate their input state: copy it, the caller may hold params/key
            # (a runtime copy: one eager copy per leaf would compile a program per shape)
            state = jax.device_put(state, may_alias=False)
            return self, state, data, eval_data, hyper
        block = self.n // distributed.check_workers(self.n, self.mesh)
        if program.worker_chunks != AUTO and block % int(program.worker_chunks):
            raise ValueError(
                f"worker_chunks ({program.worker_chunks}) must divide the workers each device "
                f"holds (n / devices = {self.n} / {self.n // block} = {block}) when running on "
                "a mesh"
            )
        placed = dataclasses.replace(
            self,
            specs=distributed.state_specs(state, self.n, self.mesh),
            data_specs=distributed.data_specs(data, self.n, self.mesh),
            eval_specs=distributed.replicated_specs(eval_data),
        )
        return (
            placed,
            placed.replace(state),
            distributed.place(data, self.mesh, placed.data_specs),
            distributed.place(eval_data, self.mesh, placed.eval_specs),
            hyper,
        )

    def replace(self, state):
        """A (loaded) state put where the compiled chunks expect it."""
        return state if self.mesh is None else distributed.place(state, self.mesh, self.specs)

    def chunk_fn(self, one):
        """``one(state, data, eval_data, hyper)`` as this layout runs it."""
        if self.mesh is None:
            return one

        def sharded(state, data, eval_data, hyper):
            run = distributed.sharded(
                lambda s, d, e: one(s, d, e, hyper),
                self.mesh,
                self.n,
                (self.specs, self.data_specs, self.eval_specs),
                (self.specs, P()),
            )
            return run(state, data, eval_data)

        return sharded

    def stop(self, bad: np.ndarray) -> bool:
        """``on_divergence="stop"``: a run stops at its first bad record."""
        return bool(bad.any())

    def finish(self, state, metrics, diverged, diverged_at, on_divergence):
        """The final state and what the result reports for it."""
        recorded = metrics["train_loss"].shape[-1]
        if on_divergence == "stop" and diverged:
            recorded = int(np.argmin(np.isfinite(metrics["train_loss"]))) + 1
            metrics = {k: v[..., :recorded] for k, v in metrics.items()}
        return state, metrics, recorded, bool(diverged), (int(diverged_at) or None)


@dataclass(frozen=True)
class SweepLayout(Layout):
    """A sweep: configurations on the leading axis (``runs`` real ones, padded to ``padded``);
    on a mesh each device runs its block of them, with no communication."""

    runs: int = 0
    padded: int = 0
    batched: ClassVar[bool] = True
    desc: ClassVar[str] = "sweep"

    def place(self, program: Program, state, data, eval_data, hyper):
        if self.mesh is None:
            return super().place(program, state, data, eval_data, hyper)
        distributed.check_workers(self.padded, self.mesh)
        placed = dataclasses.replace(
            self, specs=distributed.worker_specs(state, self.padded, self.mesh)
        )
        return (
            placed,
            placed.replace(state),
            distributed.place_replicated(data, self.mesh),
            distributed.place_replicated(eval_data, self.mesh),
            distributed.place(
                hyper, self.mesh, distributed.worker_specs(hyper, self.padded, self.mesh)
            ),
        )

    def chunk_fn(self, one):
        runs_fn = jax.vmap(one, in_axes=(0, None, None, 0))
        if self.mesh is not None:
            split = P(self.mesh.axis_names[0])
            runs_fn = jax.shard_map(
                runs_fn,
                mesh=self.mesh,
                in_specs=(split, P(), P(), split),
                out_specs=split,
                check_vma=False,
            )

        def sweep(state, data, eval_data, hyper):
            state, metrics = runs_fn(state, data, eval_data, hyper)
            return state, jax.tree.map(lambda m: m[: self.runs], metrics)

        return sweep

    def stop(self, bad: np.ndarray) -> bool:
        """A sweep stops early only when every configuration has diverged."""
        return bool(bad.any(axis=-1).all())

    def finish(self, state, metrics, diverged, diverged_at, on_divergence):
        if self.padded != self.runs:
            state = jax.jit(lambda s: jax.tree.map(lambda x: x[: self.runs], s))(state)
        return state, metrics, metrics["train_loss"].shape[-1], diverged, diverged_at


def execute(
    program: Program,
    state: RunState,
    data,
    eval_data,
    hyper,
    layout: Layout,
    schedule: Schedule,
    *,
    steps: int,
    configs: list[dict] | None,
    progress: bool,
    on_divergence: str,
    saving: Saving,
    callback=None,
) -> SimulationResult:
    """Run ``program`` from ``state``: place, resume, compile, run the chunks, collect."""
    if callback is not None:
        check_callable("callback", callback)
    first = (state, data)  # the caller's arrays (placement copies them): for a diagnosis
    layout, state, data, eval_data, hyper = layout.place(program, state, data, eval_data, hyper)
    meta, state, history, start = _resume(program, state, layout, schedule, steps, configs, saving)
    compiled, traces = _compile(program, layout, schedule)
    done: list[dict] = []
    saved = [start * schedule.steps_per_chunk if start else None]  # the step on disk
    after_chunk = _monitor(
        program, layout, schedule, saving, meta, history, done, saved, on_divergence, callback
    )
    after_chunk.diagnose = lambda: mismatch(program, *first)
    desc = layout.desc
    if start:
        desc += f" (resumed at step {start * schedule.steps_per_chunk})"
    args = (data, eval_data, hyper)
    try:
        state, history, wall = run_chunks(
            compiled,
            state,
            args,
            num_chunks=schedule.num_chunks,
            steps_per_chunk=schedule.steps_per_chunk,
            progress=progress,
            desc=desc,
            start_chunk=start,
            history=history,
            after_chunk=after_chunk,
            needs_state=saving.directory is not None,
        )
        if schedule.remainder and len(history) == schedule.num_chunks:  # not stopped early
            state, last, seconds, more = _last_record(
                program, layout, schedule, state, args, after_chunk
            )
            history, wall, traces[0] = history + last, wall + seconds, traces[0] + more
    except KeyboardInterrupt:
        at = (start + len(done)) * schedule.steps_per_chunk
        raise KeyboardInterrupt(
            f"interrupted after step {at}{_saved_where(saving, saved[0])}"
        ) from None
    result = _collect(
        layout, state, history, configs, on_divergence, traces[0], wall, schedule.record_steps()
    )
    return dataclasses.replace(result, resumed_from=start * schedule.steps_per_chunk or None)


def _last_record(program, layout, schedule, state, args, after_chunk):
    """The ``remainder`` steps past the last whole record, as one shorter record: the same
    program with ``eval_every = remainder`` (one more compile)."""
    steps = int(schedule.record_steps()[-1])
    tail = dataclasses.replace(program, eval_every=schedule.remainder)
    compiled, traces = _compile(tail, layout, Schedule(1, 1, schedule.remainder))
    state, more, seconds = run_chunks(
        compiled,
        state,
        args,
        num_chunks=1,
        steps_per_chunk=schedule.remainder,
        progress=False,
        desc=layout.desc,
        after_chunk=lambda _, current, host: after_chunk(None, current, host, step=steps),
    )
    return state, more, seconds, traces[0]


def _saved_where(saving: Saving, step: int | None) -> str:
    """What an interrupted run left on disk, and how to go on from it."""
    if saving.directory is None:
        return " (no checkpoint_dir: nothing was saved)"
    if step is None:
        return f"; no checkpoint was written to {saving.directory} yet"
    return (
        f"; the checkpoint in {saving.directory} holds step {step}: rerun the same command "
        f"to resume from step {step}"
    )


def _resume(program, state, layout, schedule, steps, configs, saving: Saving):
    """The checkpoint's record of this run, and the state, history and chunk to start from."""
    if saving.directory is None:
        return None, state, [], 0
    meta = checkpoint.fingerprint(
        state,
        identity=saving.identity,
        steps=steps,
        eval_every=program.eval_every,
        batch_size=program.batch_size,
        steps_per_chunk=schedule.steps_per_chunk,
        configs=configs,
    )
    checkpoint.remove_stale(saving.directory)
    loaded = None if saving.overwrite else checkpoint.load(saving.directory, state, meta)
    if loaded is None:
        return meta, state, [], 0
    state, history, start = loaded
    return meta, layout.replace(state), history, start


def _compile(program: Program, layout: Layout, schedule: Schedule):
    """The jitted chunk (its input state donated) and a counter of its traces."""
    traces = [0]

    def one(state, data, eval_data, hyper):
        return program.chunk(state, data, eval_data, hyper, blocks=schedule.blocks_per_chunk)

    run = layout.chunk_fn(one)

    def chunk(state, data, eval_data, hyper):
        traces[0] += 1
        return run(state, data, eval_data, hyper)

    return jax.jit(chunk, donate_argnums=0), traces


def _monitor(
    program, layout, schedule, saving, meta, history, done, saved, on_divergence, callback
):
    """``after_chunk``: save (never a non-finite state), call back, and handle divergence.

    A record is bad when its training loss or its consensus distance (computed from the
    params at the record) is non-finite: a step whose loss was finite can still leave
    non-finite params, which the next chunk would only report.
    """

    def after_chunk(next_chunk, current, host, step=None):
        """``step``: the last (shorter) record's, which is never checkpointed (refused)."""
        done.append(host)
        bad = ~np.isfinite(host["train_loss"]) | ~np.isfinite(host["consensus_distance"])
        if step is None:
            step = next_chunk * schedule.steps_per_chunk
            due = next_chunk % saving.every == 0 or next_chunk == schedule.num_chunks
            if saving.directory is not None and due and (layout.batched or not bad.any()):
                checkpoint.save(saving.directory, current, history + done, next_chunk, meta)
                saved[0] = step
        if callback is not None:
            callback(step, public(host))
        if on_divergence == "raise" and bad.any():
            cause = after_chunk.diagnose()
            raise FloatingPointError(diverged_message(host, step, cause))
        return on_divergence == "stop" and layout.stop(bad)

    return after_chunk


def _collect(layout, state, history, configs, on_divergence, traces, wall, steps):
    """The records as arrays (at ``steps``), divergence summarised, the state trimmed."""
    metrics = {k: np.concatenate([h[k] for h in history], axis=-1) for k in history[0]}
    never = np.iinfo(np.int32).max
    nonfinite = np.where(metrics[NONFINITE_STEP] > 0, metrics.pop(NONFINITE_STEP), never)
    first = nonfinite.min(axis=-1)
    diverged_at = np.where(first < never, first, 0)
    diverged = ~np.isfinite(metrics["train_loss"]).all(axis=-1)
    state, metrics, recorded, diverged, diverged_at = layout.finish(
        state, metrics, diverged, diverged_at, on_divergence
    )
    return SimulationResult(
        steps=steps[:recorded],
        metrics=metrics,
        state=state,
        configs=configs,
        diverged=diverged,
        diverged_at=diverged_at,
        traces=traces,
        wall_time=wall,
    )


def public(host: dict) -> dict:
    """A chunk's records without the internal ones."""
    return {k: v for k, v in host.items() if k != NONFINITE_STEP}
