"""Consensus control (Kong et al., arXiv 2102.04828): which training phase needs consensus.

Training with a step learning-rate schedule (x0.1 at 50 % and 75 % of the
steps, three phases) and local Nesterov momentum, on a ring of 32 workers with
IID data (the paper's data-center setting). Runs:

* ``centralized``: exact averaging every step (complete graph);
* ``decentralized``: the ring throughout;
* ``dec-phase-k``: the ring only in phase k, exact averaging elsewhere (the
  paper's experiment design), for k = 1, 2, 3;
* ``controlled-phase-1``: the ring, with consensus control in phase 1 only:
  gossip rounds are repeated until the consensus distance is at most 1/4 of
  the decentralized run's at the same step (``decjax.consensus_control``).

The critical consensus distance Gamma_t^2 = ||grad f(x_bar)||^2 / (8 L^2) +
eta sigma^2 / (L n) is estimated along the decentralized run (L by power
iteration on the Hessian, sigma^2 from minibatch gradients at the start) and
plotted against Xi_t^2. Quick mode: digits, MLP 64-32-10. Full mode: the same
with more steps and seeds.

    python experiments/consensus_control.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd

import decjax
from decjax.algorithms import DecentralizedTransformation, combine, per_worker

N = 32


def phased(local, ring, complete, ring_phases, boundaries):
    """Ring gossip during ``ring_phases`` (0-based), exact averaging otherwise."""
    on_ring, everyone = combine(ring), combine(complete)
    chained = optax.chain(per_worker(local), on_ring)

    def phase(count):
        return jnp.sum(count >= jnp.asarray(boundaries))

    def step(grads, state, params, **extra):
        updates, local_state = per_worker(local).update(grads, state[0], params)
        use_ring = jnp.isin(phase(state[1].count), jnp.asarray(ring_phases))
        new, gossip_state, info = jax.lax.cond(
            use_ring,
            lambda: on_ring.step(updates, state[1], params),
            lambda: everyone.step(updates, state[1], params),
        )
        return new, (local_state, gossip_state), info

    def update(grads, state, params=None, **extra):
        new, state, _ = step(grads, state, params)
        return jax.tree.map(jnp.subtract, new, params), state

    return DecentralizedTransformation(chained.init, update, step)


def critical_value(model, params0, ds, data, lr, batch_size):
    """Gamma^2(x) = ||grad f(x)||^2 / (8 L^2) + lr sigma^2 / (L n), as a function of x_bar."""
    x, y = ds.x_train, ds.y_train
    p = jax.tree.map(lambda a: a[0], params0)
    full_grad = jax.jit(jax.grad(lambda q: model.loss(q, (x, y))))

    def hvp(v):
        return jax.jvp(full_grad, (p,), (v,))[1]

    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(0), a.shape), p)
    for _ in range(30):
        hv = hvp(v)
        lam = optax.tree.norm(hv)
        v = jax.tree.map(lambda a: a / lam, hv)
    lipschitz = float(lam)
    rng = np.random.default_rng(0)
    g_full = full_grad(p)
    diffs = []
    for _ in range(64):
        idx = rng.integers(0, len(y), batch_size)
        g = jax.grad(model.loss)(p, (x[idx], y[idx]))
        diffs.append(float(optax.tree.norm(optax.tree.sub(g, g_full), squared=True)))
    sigma2 = float(np.mean(diffs))
    return lipschitz, sigma2


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "consensus_control")
    steps = 600 if args.quick else 3000
    seeds = [0] if args.quick else [0, 1, 2]
    lr, batch = 0.1, 16
    boundaries = [steps // 2, 3 * steps // 4]
    schedule = optax.piecewise_constant_schedule(lr, {b: 0.1 for b in boundaries})
    local = optax.sgd(schedule, momentum=0.9, nesterov=True)
    ds = decjax.data.load_digits()
    data = decjax.data.distribute(ds, N, "iid", key=0)
    model = decjax.problems.mlp([64, 32, 10])
    ring, complete = decjax.ring(N), decjax.complete(N)
    every = steps // 30

    def grad_norm(p, batch_data):
        return {
            "accuracy": model.eval_fn(p, batch_data)["accuracy"],
            "grad_sq": optax.tree.norm(jax.grad(model.loss)(p, batch_data), squared=True),
        }

    runs = {
        "centralized": lambda: phased(local, ring, complete, [], boundaries),
        "decentralized": lambda: phased(local, ring, complete, [0, 1, 2], boundaries),
        "dec-phase-1": lambda: phased(local, ring, complete, [0], boundaries),
        "dec-phase-2": lambda: phased(local, ring, complete, [1], boundaries),
        "dec-phase-3": lambda: phased(local, ring, complete, [2], boundaries),
    }
    frames = []
    reference = None
    for seed in seeds:
        params = decjax.replicate(model.init(jax.random.key(seed)), N)
        common = {
            "steps": steps,
            "batch_size": batch,
            "eval_every": every,
            "key": jax.random.key(100 + seed),
            "eval_fn": grad_norm,
            "eval_data": (ds.x_train, ds.y_train),
            "progress": False,
        }
        test = {}
        for name, make in runs.items():
            res = decjax.simulate(model.loss, params, make(), data, **common)
            test[name] = res
            if name == "decentralized" and seed == seeds[0]:
                reference = res
        target = decjax.algorithms.reference_target(
            reference.steps,
            reference.metrics["consensus_distance"],
            fraction=0.25,
            until=boundaries[0],
        )
        tx = decjax.consensus_control(local, ring, target=target, max_rounds=100, estimator="exact")
        test["controlled-phase-1"] = decjax.simulate(model.loss, params, tx, data, **common)
        for name, res in test.items():
            df = res.to_dataframe().assign(run=name, seed=seed)
            final_params = decjax.metrics.worker_mean(res.params)
            df["final_test_accuracy"] = float(
                model.eval_fn(final_params, (ds.x_test, ds.y_test))["accuracy"]
            )
            frames.append(df)
    curves = pd.concat(frames, ignore_index=True)
    summary = (
        curves.groupby(["run", "seed"], sort=False)
        .last()
        .groupby("run", sort=False)
        .agg(
            test_accuracy=("final_test_accuracy", "mean"),
            train_accuracy=("test_accuracy", "mean"),
            gossip_rounds=("gossip_rounds", "mean"),
        )
        .reset_index()
    )
    summary["vs_centralized"] = summary["test_accuracy"] - float(
        summary.loc[summary.run == "centralized", "test_accuracy"].iloc[0]
    )

    lipschitz, sigma2 = critical_value(
        model, decjax.replicate(model.init(jax.random.key(0)), N), ds, data, lr, batch
    )
    dec = curves[(curves.run == "decentralized") & (curves.seed == seeds[0])]
    etas = np.array([float(schedule(s)) for s in dec["step"]])
    gamma2 = dec["test_grad_sq"].to_numpy() / (8 * lipschitz**2) + etas * sigma2 / (lipschitz * N)
    ctrl = curves[(curves.run == "controlled-phase-1") & (curves.seed == seeds[0])]

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].semilogy(dec["step"], dec["consensus_distance"], label="Xi^2, decentralized (ring)")
    axes[0].semilogy(ctrl["step"], ctrl["consensus_distance"], label="Xi^2, controlled in phase 1")
    axes[0].semilogy(dec["step"], gamma2, "k--", label="critical Gamma^2")
    for b in boundaries:
        axes[0].axvline(b, color="gray", lw=0.8)
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"consensus distance vs critical value (L={lipschitz:.2f})")
    axes[1].bar(summary["run"], summary["test_accuracy"])
    lo = summary["test_accuracy"].min()
    axes[1].set_ylim(lo - 0.02, min(1.0, summary["test_accuracy"].max() + 0.01))
    axes[1].set_title("final test accuracy (averaged model)")
    axes[1].tick_params(axis="x", rotation=30, labelsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _common.write(args, {"summary": summary}, {"phases": fig})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
