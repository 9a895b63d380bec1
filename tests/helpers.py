"""Test helpers shared across test modules (independent numpy references)."""

import numpy as np

import decjax


def all_topologies(n: int):
    """One instance of every catalogued topology that exists for ``n`` workers."""
    out = []
    for name in decjax.topology.NAMES:
        if name == "hypercube" and n & (n - 1):
            continue
        if name in ("torus", "grid") and all(n % d for d in range(2, n)):
            continue  # a prime n has no 2-D shape
        out.append(decjax.topology.by_name(name, n))
    return out


def dense_reference(topology, x, step: int, rounds: int = 1) -> np.ndarray:
    """Float64 numpy ``W_{t+k-1} ... W_t x`` from the dense matrices."""
    mats = topology.numpy_matrices()
    y = np.asarray(x, dtype=np.float64)
    for r in range(rounds):
        w = mats[(step + r) % topology.period]
        y = np.tensordot(w, y, axes=(1, 0))
    return y


def step_loop(tx, params, grads_fn, count: int, *, history: bool = False, **extra):
    """``count`` steps of ``apply_step`` (simulate's path: ``tx.step`` where there is one),
    jitted; returns the params, the state and the recorded metrics of the steps' records
    (``bytes_sent``, ``gossip_rounds``, ``staleness_avg``...), accumulated as simulate does
    (with ``history``, a list of them: after step 1, 2, ...)."""
    import jax

    from decjax.algorithms import apply_step
    from decjax.metrics import accumulate, traffic_metrics, zero_totals

    state = tx.init(params)
    step = jax.jit(lambda g, s, p: apply_step(tx, g, s, p, **extra))
    totals, records = None, []
    for t in range(count):
        params, state, info = step(grads_fn(params, t), state, params)
        totals = accumulate(zero_totals(info) if totals is None else totals, info)
        records.append(traffic_metrics(totals))
    return params, state, records if history else traffic_metrics(totals or {})
