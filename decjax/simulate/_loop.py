"""The host loop: compiled chunks of training, a progress bar between them, hooks."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from decjax.distributed import to_host


def divisor_near(total: int, target: float) -> int:
    """The largest divisor of ``total`` that is ``<= max(1, target)``."""
    target = max(1, int(target))
    return max(d for d in range(1, min(total, target) + 1) if total % d == 0)


def run_chunks(
    chunk_fn: Callable,
    state: Any,
    args: tuple,
    *,
    num_chunks: int,
    steps_per_chunk: int,
    progress: bool,
    desc: str,
    start_chunk: int = 0,
    history: list[dict] | None = None,
    after_chunk: Callable[[int, Any, dict], bool] | None = None,
    needs_state: bool = False,
) -> tuple[Any, list[dict], float]:
    """Call the compiled ``chunk_fn(state, *args) -> (state, metrics)`` for chunks ``start..num``.

    ``after_chunk(next_chunk, state, host_metrics)`` runs on the host after each
    chunk (progress, divergence checks, callbacks, checkpoints) and returns True
    to stop early. Without ``needs_state`` the next chunk is dispatched before
    the previous chunk's metrics are read (the device never waits for the host)
    and ``after_chunk`` receives ``state=None``; with it, each chunk is awaited
    so the hook sees the state that matches its metrics (the state is donated
    to the next chunk, so it cannot be read later).

    Returns the final state, the per-chunk metric dicts (numpy) and the wall time.
    """
    start = time.perf_counter()
    history = list(history or [])
    total = num_chunks * steps_per_chunk
    with _progress_bar()(
        total=total,
        initial=start_chunk * steps_per_chunk,
        desc=desc,
        disable=not progress,
        unit="step",
    ) as bar:

        def collect(c, metrics, current) -> bool:
            host = {k: _host_record(v) for k, v in to_host(metrics).items()}
            history.append(host)
            bar.update(steps_per_chunk)
            bar.set_postfix(shown(host), refresh=False)
            return bool(after_chunk is not None and after_chunk(c + 1, current, host))

        pending = None
        for c in range(start_chunk, num_chunks):
            state, metrics = chunk_fn(state, *args)
            if needs_state:
                if collect(c, metrics, state):
                    break
                continue
            if pending is not None and collect(c - 1, pending, None):
                pending = None
                break
            pending = metrics
        if pending is not None:
            collect(num_chunks - 1, pending, None)
    jax.block_until_ready(state)
    return state, history, time.perf_counter() - start


SHOWN = {"train_loss": "loss", "test_accuracy": "acc", "consensus_distance": "consensus"}


def shown(host: dict) -> dict[str, str]:
    """The progress bar's metrics: the last record's training loss, test accuracy and
    consensus distance (means over a sweep's finite runs), where recorded."""
    out = {}
    for name, label in SHOWN.items():
        if name in host:
            last = np.asarray(host[name])[..., -1]
            finite = last[np.isfinite(last)]
            out[label] = f"{finite.mean():.4g}" if finite.size else "non-finite"
    return out


def _progress_bar():
    """tqdm's notebook bar where ipywidgets can draw it, its text bar elsewhere: tqdm.auto
    without ipywidgets warns "IProgress not found" (with the machine's paths) into every
    notebook, the docs' pages included. Imported here, not with decjax."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm


def _host_record(value) -> np.ndarray:
    """A record on the host; a float narrower than float32 (a bfloat16 model's loss) is
    widened, exactly: NumPy and pandas do not compute in bfloat16 (``pd.concat`` raises)."""
    value = np.asarray(value)
    if jax.numpy.issubdtype(value.dtype, jax.numpy.floating) and value.dtype.itemsize < 4:
        return value.astype(np.float32)
    return value
