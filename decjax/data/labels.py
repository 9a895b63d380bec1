"""Label flipping: some workers' labels mapped to ``classes - 1 - y`` (a label-flip attack)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax.data.sampling import WorkerData


def flip_labels(data: Any, workers, classes: int) -> Any:
    """``data`` with the labels of ``workers`` mapped to ``classes - 1 - y``; the others' unchanged.

    ``data`` is a :class:`~decjax.data.WorkerData` (the flipped workers' examples
    are copied, flipped, to the end of ``x``/``y`` and their indices moved there,
    so an example two workers share stays unflipped for the honest one) or an
    ``(x, y)`` pair stacked over the workers (full-batch data).
    """
    workers = np.asarray(sorted({int(i) for i in np.asarray(workers).reshape(-1)}), np.int64)
    if isinstance(data, WorkerData):
        if workers.size == 0:
            return data
        _check_labels(data.y, classes)
        owned = data.indices[workers]  # (b, m)
        start = data.y.shape[0]
        x = jnp.concatenate([data.x, data.x[owned.reshape(-1)]], axis=0)
        y = jnp.concatenate([data.y, classes - 1 - data.y[owned.reshape(-1)]], axis=0)
        moved = start + jnp.arange(owned.size, dtype=data.indices.dtype).reshape(owned.shape)
        return data._replace(x=x, y=y, indices=data.indices.at[workers].set(moved))
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
        _check_labels(y, classes)
        rows = np.zeros(y.shape[0], bool)
        rows[workers] = True
        flipped = jnp.where(
            jnp.asarray(rows).reshape(-1, *([1] * (y.ndim - 1))), classes - 1 - y, y
        )
        return (x, flipped) if isinstance(data, tuple) else [x, flipped]
    raise TypeError(
        "label flipping needs decjax.data.WorkerData or (x, y) stacked over the workers, got "
        f"{type(data).__name__}"
    )


def _check_labels(y, classes: int) -> None:
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"label flipping needs integer class labels, got {jnp.result_type(y)}")
    if isinstance(y, jax.core.Tracer):
        return  # inside a traced run (make_run under jit): checked where the data was made
    if int(jnp.min(y)) < 0 or int(jnp.max(y)) >= classes:
        raise ValueError(
            f"LabelFlip(classes={classes}) needs labels in [0, {classes}), got "
            f"[{int(jnp.min(y))}, {int(jnp.max(y))}]: set classes= to the number of classes"
        )
