"""Run options as small objects, shared by ``simulate``, ``sweep`` and ``make_run``.

Each groups the keywords of one concern, validates them when built, and can
be kept and reused across runs (like diffrax's ``SaveAt`` and step-size
controllers)::

    evaluation = decjax.Evaluation(every=50, fn=model.eval_fn, data=(x_test, y_test))
    execution = decjax.Execution(chunks=10, worker_chunks=4)
    decjax.simulate(loss, params, tx, data, steps=1000, key=key,
                    evaluation=evaluation, execution=execution)

The flat keywords (``eval_every=``, ``eval_fn=``, ``chunks=`` …) remain, as they
read better in a notebook; giving an object and one of its keywords at once
is refused, so no value is silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from decjax._platform import check_lowering
from decjax._validation import check_bool, check_callable, check_int
from decjax.simulate._lowering import AUTO, check_steps_per_iteration, check_worker_chunks


@dataclass(frozen=True)
class Evaluation:
    """What is recorded, and how often.

    Attributes:
      every: steps between records (default: about 25 records per run).
      fn: ``fn(single_params, data) -> {name: scalar}``, evaluated on the
        averaged model (``test_<name>``) and, with ``workers``, on every worker.
      data: the evaluation data passed to ``fn`` (replicated on a mesh).
      workers: also evaluate every worker (``worker_test_<name>``, the mean
        over workers of each worker's own metric). Off by default: it costs
        ``n`` evaluations per record (on the CPU, 64 workers, 10,000 test
        examples recorded every 35 steps: 2.1 times a run without evaluation,
        while the averaged model's evaluation costs nothing measurable;
        ``benchmarks/results/simulate_step_cpu.md``).
    """

    every: int | None = None
    fn: Callable | None = None
    data: Any = None
    workers: bool = False

    def __post_init__(self):
        if self.every is not None:
            check_int("Evaluation.every", self.every, minimum=1)
        if self.fn is not None:
            check_callable("Evaluation.fn", self.fn)
        check_bool("Evaluation.workers", self.workers)


@dataclass(frozen=True)
class Checkpointing:
    """Where a run saves itself and how a resume is checked.

    The full run state (params, optimizer and algorithm state, delay buffers,
    RNG keys, step, the running totals and the metrics so far) is saved every
    ``every`` chunks, atomically; if ``dir`` already holds a checkpoint of the
    same run, the run resumes from it, bitwise identical to an uninterrupted
    one (on the same device). The checkpoint records the run's identity
    (algorithm and its options, hyperparameters by name, topology weights,
    key, initial params and state, data, what ``loss_fn``/``eval_fn`` compute,
    ``eval_workers``, ``mix_model_state``, the time model, ``run_id``; see
    :mod:`decjax.simulate.identity`): a checkpoint of another run raises
    ``ValueError`` naming the first field that differs (``learning_rate is 0.3
    there and 0.1 here``). A state whose loss or params are non-finite is never
    written. Ctrl-C leaves the last checkpoint valid and raises
    ``KeyboardInterrupt`` naming the step it holds.

    Attributes:
      dir: the checkpoint directory (``None``: no checkpoints).
      every: chunks between checkpoints.
      run_id: a label stored and compared on resume (what no hash can see).
      overwrite: start afresh over a checkpoint of another run.
    """

    dir: str | os.PathLike | None = None
    every: int = 1
    run_id: str | None = None
    overwrite: bool = False

    def __post_init__(self):
        if self.dir is not None and not isinstance(self.dir, str | os.PathLike):
            raise TypeError(f"Checkpointing.dir must be a path, got {type(self.dir).__name__}")
        check_int("Checkpointing.every", self.every, minimum=1)
        if self.run_id is not None and not isinstance(self.run_id, str):
            raise TypeError(f"Checkpointing.run_id must be a str, got {self.run_id!r}")
        check_bool("Checkpointing.overwrite", self.overwrite)


@dataclass(frozen=True)
class Execution:
    """How the run is laid out on the machine (results agree to float rounding whatever these are).

    Attributes:
      chunks: compiled calls with a progress bar between them (default about
        20; a divisor of the number of records).
      steps_per_iteration: training steps per iteration of the compiled loop.
        With 2 every step writes its new params over the params of two steps
        before, instead of into a fresh buffer that is then copied back: one
        pass over the params (and over every gossiped state leaf) less per
        step, for one more params-sized temporary and a compiled program
        twice the size. ``"auto"`` (the default) weighs the two: 2 for a run
        of at least 10^9 parameter-steps (steps times the parameters of all
        the workers, where the saved copies pay for the longer compile) of a
        loss without a convolution, 1 otherwise (short runs, and convnets,
        whose steps are compute-bound and whose doubled program compiles
        much longer). Use 1 when memory, not time, is the limit. Results
        agree to float32 rounding.
      worker_chunks: compute minibatches and gradients for this many groups
        of workers one after another (``lax.map``), to bound activation memory
        at large ``n``; ``n`` (with ``mesh``: each device's ``n / devices``)
        must be a multiple. The minibatches are the same; results agree with
        ``worker_chunks=1`` to float32 rounding (XLA may order a vmapped
        matmul's additions by its batch size; measured 2e-7). ``"auto"`` (the
        default): one worker at a time for a model with convolutions on the
        CPU, where a vmapped convolution (a grouped convolution over the
        workers) is slow, otherwise one group of all the workers (see
        ``python -m benchmarks.conv_lowering`` and docs/benchmarks.md).
      mesh: a 1-D device mesh (:func:`decjax.distributed.worker_mesh`). In
        ``simulate`` the worker axis is split over the devices (``n`` a
        multiple of their number) and every step runs under
        ``jax.shard_map``, gossip becoming ``ppermute``/``all_gather``;
        results agree with the single-device run to float32 rounding. In
        ``sweep`` the configurations are split over the devices.
      lowering: how the program is lowered for the platform (:mod:`decjax._platform`):
        ``"auto"`` (the default) applies XLA:CPU's workarounds on the CPU backend
        and nowhere else, ``"cpu"`` applies them on any backend, ``"plain"`` on
        none. The workarounds: the convolution's patch-matmul gradients
        (:func:`decjax.problems.conv_general_dilated`), ``worker_chunks="auto"``
        as one worker at a time for a loss with a convolution, gossip whose
        input is the previous gossip's output kept from fusing into it, and
        sums over the workers as a dot with ones. Results
        agree to float rounding; only speed and memory differ.
    """

    chunks: int | None = None
    steps_per_iteration: int | str = AUTO
    worker_chunks: int | str = AUTO
    mesh: Any = None
    lowering: str = AUTO

    def __post_init__(self):
        if self.chunks is not None:
            check_int("Execution.chunks", self.chunks, minimum=1)
        check_steps_per_iteration("Execution.steps_per_iteration", self.steps_per_iteration)
        check_worker_chunks("Execution.worker_chunks", self.worker_chunks)
        check_lowering("Execution.lowering", self.lowering)


# Each object's fields and the flat keyword each one stands for.
KEYWORDS = {
    Evaluation: {
        "every": "eval_every",
        "fn": "eval_fn",
        "data": "eval_data",
        "workers": "eval_workers",
    },
    Checkpointing: {
        "dir": "checkpoint_dir",
        "every": "checkpoint_every",
        "run_id": "run_id",
        "overwrite": "overwrite",
    },
    Execution: {
        "chunks": "chunks",
        "steps_per_iteration": "steps_per_iteration",
        "worker_chunks": "worker_chunks",
        "mesh": "mesh",
    },
}


# Every flat keyword and its default (the default of the field it stands for).
FLAT_DEFAULTS = {
    keyword: next(f.default for f in fields(kind) if f.name == name)
    for kind, names in KEYWORDS.items()
    for name, keyword in names.items()
}


@dataclass(frozen=True)
class Options:
    """A run's three option objects: what ``simulate``, ``sweep`` and ``make_run`` pass on
    after converting the flat keywords at their door (:func:`gather`)."""

    evaluation: Evaluation = Evaluation()
    checkpointing: Checkpointing = Checkpointing()
    execution: Execution = Execution()


def check_known(function: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (a ``**options``), refused in one line naming the known keywords when one
    of them is unknown."""
    unknown = sorted(set(given) - set(FLAT_DEFAULTS))
    if unknown:
        raise TypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r}; its options "
            f"are {', '.join(FLAT_DEFAULTS)} (or the Evaluation, Checkpointing and "
            "Execution objects)"
        )
    return given


def keywords(kind, *values):
    """An option object of ``kind`` from its flat keywords' values, in the order of
    :data:`KEYWORDS` (``keywords(Evaluation, eval_every, eval_fn, eval_data, eval_workers)``)."""
    return _from_keywords(kind, dict(zip(KEYWORDS[kind].values(), values, strict=True)))


def gather(*pairs: tuple[Any, Any]) -> Options:
    """One :class:`Options` from ``(given object or None, object of the flat keywords)``
    pairs, in the order evaluation, checkpointing, execution: converted once, at the door.

    A flat keyword changed from its default while its object is also given is refused,
    so no value is silently ignored.
    """
    built = []
    for given, flat in pairs:
        kind = type(flat)
        argument = kind.__name__.lower()
        if given is None:
            built.append(flat)
            continue
        if not isinstance(given, kind):
            raise TypeError(
                f"{argument} must be a decjax.{kind.__name__} or None, got {type(given).__name__}"
            )
        for name, keyword in KEYWORDS[kind].items():
            if not _is_default(getattr(flat, name), FLAT_DEFAULTS[keyword]):
                raise ValueError(
                    f"give either {argument}={kind.__name__}(...) or {keyword}=, not both"
                )
        built.append(given)
    return Options(*built)


def gather_flat(
    flat: dict[str, Any],
    evaluation: Evaluation | None = None,
    checkpointing: Checkpointing | None = None,
    execution: Execution | None = None,
) -> Options:
    """:func:`gather` of flat keywords given as a dict (``sweep``'s ``**options``); those
    not in ``flat`` take their defaults."""
    given = (evaluation, checkpointing, execution)
    return gather(
        *((obj, _from_keywords(kind, flat)) for obj, kind in zip(given, KEYWORDS, strict=True))
    )


def _from_keywords(kind, flat: dict[str, Any]):
    """``kind`` built from its flat keywords; a refusal names the keyword, not the field."""
    names = KEYWORDS[kind]
    try:
        return kind(
            **{name: flat.get(keyword, FLAT_DEFAULTS[keyword]) for name, keyword in names.items()}
        )
    except (TypeError, ValueError) as err:
        message = str(err)
        for name, keyword in names.items():
            message = message.replace(f"{kind.__name__}.{name}", keyword)
        raise type(err)(message) from None


def _is_default(value, default) -> bool:
    if value is default:
        return True
    if isinstance(value, str) and isinstance(default, str):
        return value == default
    if default is None or not isinstance(value, bool | int | float):
        return False
    return value == default and type(value) is type(default)
