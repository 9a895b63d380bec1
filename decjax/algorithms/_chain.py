"""``decjax.chain``: ``optax.chain`` over stacked workers that keeps the step and its record."""

from __future__ import annotations

import optax

from decjax._closures import closure_cells
from decjax.algorithms._combine import PerWorker, per_worker
from decjax.algorithms._common import StepTransformation, local_then

FIX = "use decjax.chain(...), which keeps it and applies the optax transformations per worker"


def chain(*transformations: optax.GradientTransformation) -> optax.GradientTransformation:
    """Chain per-worker optax transformations and a decentralized algorithm, keeping its record.

    ``decjax.chain(t_1, ..., t_k, algorithm)`` is ``optax.chain`` over the
    ``n`` stacked workers, with the two differences a simulation needs:

    * every ``t_i`` acts on each worker separately (:func:`per_worker`), as it
      would on the worker's own machine: ``optax.clip_by_global_norm(1.0)``
      clips each worker's gradient by its own norm, where a bare
      ``optax.chain`` clips by the norm of all workers' gradients together;
    * the algorithm's ``step`` and its per-step record survive (``bytes_sent``,
      the link record :class:`decjax.timing.TimeModel` prices), where a bare
      ``optax.chain`` keeps neither; ``simulate`` refuses such a chain.

    The last transformation may be a plain optax one too: then every member
    acts per worker and the chain (a :class:`PerWorker`) communicates nothing,
    so it can itself be a member of another chain.

    Args:
      *transformations: optax transformations; only the last may be a
        decentralized algorithm (a :class:`StepTransformation`).

    Returns:
      A :class:`DecentralizedTransformation` (``step`` keeps the algorithm's
      record, unchanged), or a :class:`PerWorker` when none communicates.

    Examples:
      >>> import jax.numpy as jnp, optax, decjax
      >>> tx = decjax.chain(optax.clip_by_global_norm(1.0), decjax.dpsgd(0.1, decjax.ring(4)))
      >>> params = jnp.zeros((4, 250))
      >>> new, state, info = tx.step(jnp.ones((4, 250)), tx.init(params), params)
      >>> float(info["bytes_sent"])  # two neighbours, 1 kB each: kept through the chain
      2000.0
      >>> round(float(jnp.linalg.norm(new[0] - params[0])), 6)  # clipped per worker, times lr
      0.1
    """
    if not transformations:
        raise ValueError("chain needs at least one transformation")
    for i, tx in enumerate(transformations):
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(
                f"transformation {i} must be an optax.GradientTransformation, "
                f"got {type(tx).__name__}"
            )
    *prefix, last = transformations
    for i, tx in enumerate(prefix):
        if isinstance(tx, StepTransformation) or holds_algorithm(tx):
            raise ValueError(
                f"transformation {i} of the chain communicates (a decentralized algorithm); only "
                "the last may: put it last, or chain its local part before it"
            )
    if not isinstance(last, StepTransformation):
        if holds_algorithm(last):
            raise ValueError(f"the last transformation is an optax.chain holding one: {FIX}")
        return PerWorker(*optax.chain(*map(per_worker, transformations)))
    if not prefix:
        return last
    return local_then(optax.chain(*map(per_worker, prefix)), last)


def holds_algorithm(tx: optax.GradientTransformation, depth: int = 4) -> bool:
    """Whether a transformation that is not itself one wraps a decentralized algorithm (as
    ``optax.chain(..., decjax.dpsgd(...))`` does), found through its functions' closures."""
    seen: set[int] = set()

    def search(obj, level):
        if level > depth or id(obj) in seen:
            return False
        seen.add(id(obj))
        if isinstance(obj, StepTransformation) or hasattr(obj, "decjax_step"):
            return True
        if isinstance(obj, tuple | list):
            return any(search(item, level + 1) for item in obj)
        if callable(obj) and hasattr(obj, "__code__"):
            return any(search(value, level + 1) for _, value in closure_cells(obj))
        return False

    if isinstance(tx, StepTransformation | PerWorker):
        return False
    return any(search(part, 1) for part in (tx.init, tx.update))
