"""Checkpoints of a run at chunk boundaries: ``.npz`` of the flattened state, identity checked.

A checkpoint holds every leaf of the run state (params, optimizer/algorithm
state, delay buffers, RNG keys, step), the metrics recorded so far, the index
of the next chunk, the run's structure (tree, shapes, schedule) and its
identity (:mod:`decjax.simulate.identity`: algorithm, hyperparameters,
topology, key, initial state, data, functions, ``run_id``). A resume checks
both and names the first field that differs, so a checkpoint never resumes
another run.

It is written to a fresh temporary file in the same directory (``mkstemp``:
never a pre-existing path, never through a symlink) and renamed over the old
one, so it is never half-written, also when interrupted. No pickle: leaves
are plain arrays (typed PRNG keys are stored as their key data). A file that
cannot be read is reported as corrupt, naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decjax._validation import is_prng_key
from decjax.distributed import to_host
from decjax.simulate.identity import FIELDS

FILENAME = "checkpoint.npz"
FORMAT = 4  # 3: running totals of the steps' records; 4: compensated (sum, error) totals
STRUCTURE = (
    "format",
    "treedef",
    "leaves",
    "steps",
    "eval_every",
    "batch_size",
    "steps_per_chunk",
    "configs",
)


def fingerprint(state: Any, *, identity: dict[str, str] | None, **config) -> dict:
    """What must match to resume: tree structure, leaf shapes and dtypes, schedule, identity."""
    leaves, treedef = jax.tree.flatten(state)
    return {
        "format": FORMAT,
        "treedef": str(treedef),
        "leaves": [[list(jnp.shape(x)), str(jnp.result_type(x))] for x in leaves],
        **config,
        "identity": identity,
    }


def check_directory(directory) -> Path:
    """``checkpoint_dir`` as a ``Path``; an existing non-directory is refused up front."""
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(
            f"checkpoint_dir must be a path (str or os.PathLike), got {type(directory).__name__}"
        )
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"checkpoint_dir {str(path)!r} exists and is not a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"checkpoint_dir {str(path)!r} cannot be created: {str(existing)!r} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"checkpoint_dir {str(path)!r} cannot be written: {str(existing)!r} is not writable"
        )
    return path


def remove_stale(directory) -> None:
    """Remove the temporary files of saves that were killed (``checkpoint.npz.*.tmp``).

    Only regular files of that pattern, never a symlink or a directory.
    """
    path = Path(directory)
    if jax.process_index() != 0 or not path.is_dir():
        return
    for stale in path.glob(FILENAME + ".*.tmp"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)


def save(directory: Path, state: Any, history: list[dict], next_chunk: int, meta: dict) -> Path:
    """Atomically write ``directory/checkpoint.npz``."""
    directory = Path(directory)
    arrays = {}
    for i, leaf in enumerate(jax.tree.leaves(state)):
        if is_prng_key(leaf):
            leaf = jax.random.key_data(leaf)
        # every process joins the gather (a collective); only process 0 writes
        arrays[f"leaf_{i}"] = to_host(leaf)
    final = directory / FILENAME
    if jax.process_index() != 0:
        return final
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(history[0]) if history else []
    for name in names:
        arrays[f"metric_{name}"] = np.concatenate([h[name] for h in history], axis=-1)
    record = {
        **meta,
        "next_chunk": next_chunk,
        "metric_names": names,
        "records_per_chunk": [int(h["train_loss"].shape[-1]) for h in history],
    }
    arrays["meta"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=FILENAME + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:  # also KeyboardInterrupt: the last good checkpoint stays
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _read(path: Path) -> tuple[dict, list, dict]:
    """The record, the leaves and the metric arrays of a checkpoint file; corrupt -> ValueError."""
    try:
        with open(path, "rb") as f, np.load(f) as data:
            record = json.loads(bytes(data["meta"]).decode())
            if not isinstance(record, dict):
                raise ValueError("its record is not a JSON object")
            stored = [data[f"leaf_{i}"] for i in range(len(record.get("leaves", [])))]
            metrics = {name: data[f"metric_{name}"] for name in record.get("metric_names", [])}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ValueError(
            f"corrupt checkpoint {path} ({reason}); delete it or use another checkpoint_dir"
        ) from None
    return record, stored, metrics


def _first_difference(record: dict, meta: dict) -> str | None:
    """The first structural or identity field that differs, with both values."""
    for key in STRUCTURE:
        if record.get(key) != meta.get(key):
            return f"{key} is {record.get(key)!r} there and {meta.get(key)!r} here"
    theirs, ours = record.get("identity", {}), meta["identity"]
    for key in FIELDS:
        there, here = theirs.get(key), ours.get(key)
        if there == here:
            continue
        if isinstance(there, dict) and isinstance(here, dict):  # name the first that differs
            for name in [*there, *(k for k in here if k not in there)]:
                if there.get(name) != here.get(name):
                    return (
                        f"{key}: {name} is {there.get(name, 'absent')} there and "
                        f"{here.get(name, 'absent')} here"
                    )
        same_name = (
            key in ("loss_fn", "eval_fn")
            and str(there).split(" computing ")[0] == str(here).split(" computing ")[0]
        )
        hint = (
            f" (the same {key} computes something else now: another activation, weight, "
            "dropout rate or augmentation)"
            if same_name
            else ""
        )
        return f"{key} is {there!r} there and {here!r} here{hint}"
    return None


def load(
    directory: str | os.PathLike, like_state: Any, meta: dict
) -> tuple[Any, list[dict], int] | None:
    """Read ``directory/checkpoint.npz`` into a state shaped like ``like_state``.

    Returns ``None`` when there is no checkpoint. Raises ``ValueError`` naming
    the first field that differs when the checkpoint belongs to another run,
    and naming the file when it cannot be read.
    """
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    record, stored, metrics = _read(path)
    difference = _first_difference(record, meta)
    if difference is not None:
        raise ValueError(
            f"checkpoint {path} was written by another run: {difference}; use another "
            "checkpoint_dir, or pass overwrite=True to start this run afresh over it"
        )
    leaves, treedef = jax.tree.flatten(like_state)
    restored = []
    for like, value in zip(leaves, stored, strict=True):
        if is_prng_key(like):
            impl = jax.random.key_impl(like)
            restored.append(jax.random.wrap_key_data(jnp.asarray(value), impl=impl))
        else:
            restored.append(jnp.asarray(value, dtype=jnp.result_type(like)))
    history = []
    start = 0
    for count in record["records_per_chunk"]:
        history.append({name: m[..., start : start + count] for name, m in metrics.items()})
        start += count
    return jax.tree.unflatten(treedef, restored), history, int(record["next_chunk"])
