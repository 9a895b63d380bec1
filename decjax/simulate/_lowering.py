"""``worker_chunks="auto"``: how many groups of workers to compute one after another.

Every convolution in a vmapped model has per-worker weights, and ``vmap``
turns it into one grouped convolution over all the workers
(``feature_group_count = n``). On XLA:CPU a grouped convolution's forward pass
and input gradient are several times slower than the same convolutions run one
worker at a time (``benchmarks/results/conv_lowering_cpu.md``: ResNet-20's
first stage, 16 workers, forward 243 ms grouped against 34 ms one at a time).
Whole training steps agree: with ``decjax.problems.conv_general_dilated`` (the
zoo's convolution), LeNet-5 at n = 64 took 613 ms vmapped and 354 ms one worker
at a time, ResNet-20 at n = 8 2,368 ms and 1,007 ms. One worker at a time also
holds one worker's activations instead of all of them (6.2 MB per worker for
ResNet-20 instead of 255 MB, ``benchmarks/results/memory_cpu.md``). Models
without convolutions (MLPs, transformers) are batched matmuls, which vmap
computes well: there a ``lax.map`` only adds a loop. So ``"auto"`` means one
worker at a time for a loss with a convolution on the CPU, and one vmapped
group otherwise. On GPUs the grouped convolution is the default until the
study (``python -m benchmarks.conv_lowering``) has run there.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from typing import Any

import jax

from decjax._platform import cpu_lowering

AUTO = "auto"
CONVOLUTIONS = frozenset({"conv_general_dilated"})


def check_worker_chunks(name: str, value: Any) -> int | str:
    """A positive int, or ``"auto"``."""
    if isinstance(value, str) and value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int or 'auto', got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int or 'auto', got {value!r}")
    return int(value)


def _subjaxprs(value) -> Iterator:
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(getattr(value, "jaxpr", None), "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _subjaxprs(item)


def _has_primitive(jaxpr, names: frozenset) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            return True
        for value in eqn.params.values():
            if any(_has_primitive(sub, names) for sub in _subjaxprs(value)):
                return True
    return False


def has_convolution(fn: Callable, *args) -> bool:
    """Whether ``fn(*args)`` computes a convolution (traced, nothing runs; shapes suffice)."""
    return _has_primitive(jax.make_jaxpr(fn)(*args).jaxpr, CONVOLUTIONS)


def one_worker(stacked):
    """The shapes of worker 0's slice of every leaf of ``stacked`` (arrays or shapes with the
    workers on the leading axis; nothing is computed or compiled)."""
    return jax.eval_shape(lambda tree: jax.tree.map(lambda x: x[0], tree), stacked)


# Steps per iteration of the compiled loop for a long run of a loss without a convolution
# (see ``resolve_steps_per_iteration``).
STEPS_PER_ITERATION = 2
# Parameters x training steps (all workers, the whole run) from which two steps per
# iteration pay for their longer compile (see ``resolve_steps_per_iteration``).
PAYBACK_FLOAT_STEPS = 10**9


def check_steps_per_iteration(name: str, value: Any) -> int | str:
    """A positive int, or ``"auto"``."""
    return check_worker_chunks(name, value)


def resolve_steps_per_iteration(
    steps: int | str, loss_fn: Callable, *stacked, run_steps: int | None = None
) -> int:
    """Training steps per iteration of the compiled loop; ``"auto"`` weighs compile
    against run time.

    Two steps per iteration save a copy of the parameters per step (a gossip
    step cannot overwrite its input; with one step per iteration XLA writes
    the new parameters to a fresh buffer and copies it back into the loop
    carry), and double the compiled loop body. On the 2-core CPU
    (``benchmarks/results/simulate_step_cpu.md``, the 784-256-256-10 MLP) one
    step per iteration takes up to 1.094 times as long per step (D-PSGD on a
    ring; about as long for the complete graph or with a record every step),
    while the second copy of the step adds 0.157 to 0.189 s to the compile:
    where two steps save anything they pay back after 7.6e8 to 1.0e10
    parameter-steps (207 steps at n = 16 and 11 at n = 256 for the ring).
    ``"auto"`` takes the low end, :data:`PAYBACK_FLOAT_STEPS`: where two steps
    save nothing, the loss is one longer compile; where they save, the gain
    grows with every step. So ``"auto"`` is:

    - one step per iteration for a run shorter than that (``run_steps`` times
      the parameters the program holds, ``stacked[0]``: all the workers, per
      configuration in a sweep, per device under a mesh), and for a loss with a
      convolution, whose step is compute-bound (ResNet-20's 270k parameters
      per worker against its convolutions) while its doubled program compiles
      much longer (ResNet-20 at n = 4: 6.87 s against 5.63 s);
    - :data:`STEPS_PER_ITERATION` otherwise (MLPs, transformers, linear models:
      memory-bound steps), and when ``run_steps`` is not known.
    """
    if steps != AUTO:
        return int(steps)
    floats = sum(leaf.size for leaf in jax.tree.leaves(stacked[0]))
    if run_steps is not None and run_steps * floats < PAYBACK_FLOAT_STEPS:
        return 1  # the cheap test first: a short run traces no loss
    return 1 if has_convolution(loss_fn, *one_worker(stacked)) else STEPS_PER_ITERATION


def resolve_worker_chunks(worker_chunks: int | str, loss_fn: Callable, *stacked) -> int:
    """The number of worker groups; ``stacked``: the loss's arguments for all the workers.

    ``stacked`` may be arrays or ``jax.ShapeDtypeStruct`` with the workers on
    the leading axis; only their shapes are used.
    """
    if worker_chunks != AUTO:
        return int(worker_chunks)
    if not cpu_lowering():  # one vmapped group; the CPU lowering scans convnets
        return 1
    n = jax.tree.leaves(stacked[0])[0].shape[0]
    return n if has_convolution(loss_fn, *one_worker(stacked)) else 1


def over_worker_groups(fn: Callable, args: tuple, groups: int):
    """``fn(*args)`` for ``fn`` vmapped over the workers (every leaf of ``args`` stacked
    ``(n, ...)``), computed ``groups`` groups of workers one after another (a ``lax.map``)
    and stacked back to ``(n, ...)``; one call for ``groups == 1``."""
    if groups == 1:
        return fn(*args)
    n = jax.tree.leaves(args)[0].shape[0]

    def split(x):
        return x.reshape(groups, n // groups, *x.shape[1:])

    out = jax.lax.map(lambda part: fn(*part), jax.tree.map(split, args))
    return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)
