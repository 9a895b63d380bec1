"""A :class:`~decjax.simulate.SimulationResult` on disk: one ``.npz`` file, no pickle.

It holds the records (``steps``, every metric), the run's description
(``configs``, divergence, traces, wall time, where it resumed from) and the
final params and model state (BatchNorm statistics...) of every worker, leaf by
leaf with their tree paths. The optimizer state and keys are the
checkpoint's business (``checkpoint_dir=``), not the result's.

``load`` gives the params back as ``{tree path: array}``, or in their own
structure when given a pytree shaped like them (``params_like``: the stacked
params the run started from; a sweep's have one more leading axis, the
configurations); shapes and dtypes are checked.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = 1
_META = "meta.json"


@dataclass(frozen=True)
class StoredState:
    """The final ``params`` and ``model_state`` of a stored result (``None`` if it had none)."""

    params: Any
    model_state: Any = None


def _leaves(tree) -> dict[str, np.ndarray]:
    if tree is None:
        return {}
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _json_value(value, where: str):
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{where} is a {type(value).__name__}; a saved result stores numbers and strings only "
        "(give the sweep's grid names or numbers)"
    )


def save(result, path) -> Path:
    """Write ``result`` to ``path`` (``.npz`` added if missing); returns the path written."""
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")
    configs = None
    if result.configs is not None:
        configs = [
            {k: _json_value(v, f"configs[{i}][{k!r}]") for k, v in c.items()}
            for i, c in enumerate(result.configs)
        ]
    state = result.state
    model_state = getattr(state, "model_state", None)
    params = _leaves(getattr(state, "params", None))  # one host copy of each leaf
    states = None if model_state is None else _leaves(model_state)
    arrays = {"steps": np.asarray(result.steps)}
    arrays |= {f"metric/{k}": np.asarray(v) for k, v in result.metrics.items()}
    arrays |= {f"params/{k}": v for k, v in params.items()}
    arrays |= {f"model_state/{k}": v for k, v in (states or {}).items()}
    arrays["diverged"] = np.asarray(result.diverged, dtype=bool)
    arrays["diverged_at"] = np.asarray(
        -1 if result.diverged_at is None else result.diverged_at, dtype=np.int64
    )
    meta = {
        "format": FORMAT,
        "configs": configs,
        "traces": int(result.traces),
        "wall_time": float(result.wall_time),
        "resumed_from": result.resumed_from,
        "diverged_at_none": result.diverged_at is None,
        "metrics": list(result.metrics),
        "params": list(params),
        "model_state": None if states is None else list(states),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays[_META] = np.array(json.dumps(meta))
    savez: Any = np.savez  # its allow_pickle keyword confuses the checker's reading of **arrays
    savez(path, **arrays)
    return path


def load(path, *, params_like=None) -> dict:
    """The fields of the :class:`~decjax.simulate.SimulationResult` saved at ``path``.

    ``params_like``: a pytree with the saved params' structure; the params come back
    in it (shapes and dtypes must match). Without it, ``{tree path: array}``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        meta = json.loads(str(arrays.pop(_META)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a saved decjax result ({err})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} has result format {meta.get('format')}; this decjax reads {FORMAT}"
        )
    params = {k: arrays[f"params/{k}"] for k in meta["params"]}
    model_state = (
        None
        if meta["model_state"] is None
        else {k: arrays[f"model_state/{k}"] for k in meta["model_state"]}
    )
    sweep = meta["configs"] is not None
    if params_like is not None:
        params = _restore(params, params_like, path, sweep)
    diverged_at = None if meta["diverged_at_none"] else arrays["diverged_at"]
    return dict(
        steps=arrays["steps"],
        metrics={k: arrays[f"metric/{k}"] for k in meta["metrics"]},
        state=StoredState(params, model_state),
        configs=meta["configs"],
        diverged=arrays["diverged"] if sweep else bool(arrays["diverged"]),
        diverged_at=diverged_at if sweep or diverged_at is None else int(diverged_at),
        traces=meta["traces"],
        wall_time=meta["wall_time"],
        resumed_from=meta["resumed_from"],
    )


def _restore(stored: dict[str, np.ndarray], like, path: Path, sweep: bool):
    """The stored leaves in ``like``'s structure; a sweep's leaves have one more leading
    axis (the configurations) than ``like``'s, the stacked params the runs started from."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    if names != list(stored):
        raise ValueError(
            f"params_like does not have the saved params' structure: {path} holds "
            f"{len(stored)} leaves {list(stored)[:3]}..., params_like {len(names)} {names[:3]}..."
        )
    for name, (_, leaf) in zip(names, flat, strict=True):
        want = (np.shape(leaf), np.dtype(np.asarray(leaf).dtype))
        got = (stored[name].shape[1:] if sweep else stored[name].shape, stored[name].dtype)
        if want != got:
            raise ValueError(f"params_like{name} is {want}; {path} holds {got}")
    return jax.tree_util.tree_unflatten(treedef, [stored[n] for n in names])
