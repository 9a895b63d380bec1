"""DeTAG (Lu & De Sa, arXiv 2006.08085): unshuffled data, and iterations vs spectral gap.

1. "Unshuffled" data (the paper's Sec. 7.1, LeNet/CIFAR-10 replaced by an MLP on
   digits): sort the training set by label, shuffle the first X % of it, split
   it in order over 8 workers on a ring (X = 0, 25, 50, 100). D-PSGD, D² (on the
   lazy ring), gradient tracking (DSGT) and DeTAG (R = 2, eta_g = 0.2, the
   paper's setting) with momentum-free SGD; each algorithm's learning rate is
   the best of a small grid (one vmapped sweep per algorithm and X).
2. Iterations vs spectral gap on heterogeneous quadratics (16 workers): slack
   rings W_kappa = kappa W + (1 - kappa) I, kappa = 1, 0.1, 0.05, 0.01 (the
   paper's Sec. 7.2 construction). Full-gradient gradient tracking and DeTAG
   (accelerated gossip with the optimal momentum, R rounds per phase,
   R ~ 1 / sqrt(gap)) run until every worker is within 1e-4 of x*; D-PSGD never
   gets there (its bias).

    python experiments/detag.py [--quick] [--out DIR]
"""

from __future__ import annotations

import math

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import decjax

N = 8
ALGORITHMS = {
    "D-PSGD": lambda lr, t: decjax.dpsgd(lr, t),
    "D2": lambda lr, t: decjax.d2(lr, decjax.topology.lazy(t, 0.5)),
    "DSGT": lambda lr, t: decjax.gradient_tracking(lr, t),
    "DeTAG": lambda lr, t: decjax.detag(lr, t, phase_length=2, gossip_momentum=0.2),
}


def unshuffled(quick: bool) -> pd.DataFrame:
    ds = decjax.data.load_digits()
    model = decjax.problems.mlp([64, 32, 10])
    params = decjax.replicate(model.init(jax.random.key(0)), N)
    steps = 300 if quick else 2000
    lrs = [0.05, 0.2] if quick else [0.02, 0.05, 0.1, 0.2, 0.5]
    frames = []
    for shuffled in (0.0, 0.25, 0.5, 1.0):
        data = decjax.data.distribute(ds, N, "sorted", key=0, shuffled_fraction=shuffled)
        for name, make in ALGORITHMS.items():
            # the averaged model is evaluated on the whole training set: its loss is the
            # global training loss the paper plots (workers' own minibatch losses would
            # look good for D-PSGD, which fits each worker's few classes)
            result = decjax.sweep(
                model.loss,
                params,
                lambda lr, make=make: make(lr, decjax.ring(N)),
                data,
                {"lr": lrs},
                steps=steps,
                batch_size=16,
                eval_every=steps // 20,
                key=jax.random.key(1),
                eval_fn=model.eval_fn,
                eval_data=(ds.x_train, ds.y_train),
                eval_workers=False,
                progress=False,
            )
            df = result.to_dataframe().rename(
                columns={"test_loss": "global_train_loss", "test_accuracy": "train_accuracy"}
            )
            last = df.groupby("lr").last()["global_train_loss"]
            best_index = int(np.argmin(last.fillna(np.inf).to_numpy()))
            best = float(last.index[best_index])
            final_params = jax.tree.map(lambda x, i=best_index: x[i], result.params)
            accuracy = float(
                model.eval_fn(decjax.metrics.worker_mean(final_params), (ds.x_test, ds.y_test))[
                    "accuracy"
                ]
            )
            frames.append(
                df[df.lr == best].assign(
                    algorithm=name, shuffled=shuffled, final_test_accuracy=accuracy
                )
            )
    return pd.concat(frames, ignore_index=True)


def iterations_to_optimum(make, quad, lrs, max_steps: int, tol: float = 1e-4) -> int:
    """Fewest iterations over the learning-rate grid (vmapped) to bring every worker near x*."""
    grads = jax.vmap(jax.grad(quad.loss))

    @jax.jit
    @jax.vmap
    def run(lr):
        tx = make(lr)
        x = quad.init_params()

        def body(carry, _):
            x, state = carry
            x, state, _ = decjax.algorithms.apply_step(tx, grads(x, quad.data), state, x)
            return (x, state), jnp.max(jnp.abs(x - quad.optimum[None]))

        return jax.lax.scan(body, (x, tx.init(x)), None, length=max_steps)[1]

    errors = np.asarray(run(jnp.asarray(lrs)))
    hits = [np.flatnonzero(e < tol) for e in errors]
    found = [int(h[0]) + 1 for h in hits if h.size]
    return min(found) if found else -1


def slack(quick: bool) -> pd.DataFrame:
    n = 16
    quad = decjax.problems.quadratics(n, 4, key=jax.random.key(0))
    max_steps = 8000 if quick else 100000
    lrs = [0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
    rows = []
    for kappa in (1.0, 0.1, 0.01) if quick else (1.0, 0.1, 0.05, 0.01):
        topo = decjax.topology.lazy(decjax.ring(n), kappa)
        gap = decjax.spectral_gap(topo)
        rounds = max(1, round(1 / math.sqrt(gap)))
        momentum = decjax.gossip.optimal_momentum(topo)
        rows.append(
            {
                "kappa": kappa,
                "spectral_gap": gap,
                "detag_R": rounds,
                "DSGT": iterations_to_optimum(
                    lambda lr, t=topo: decjax.gradient_tracking(lr, t), quad, lrs, max_steps
                ),
                "DeTAG": iterations_to_optimum(
                    lambda lr, t=topo, r=rounds, m=momentum: decjax.detag(
                        lr, t, phase_length=r, gossip_momentum=m
                    ),
                    quad,
                    lrs,
                    max_steps,
                ),
                "D-PSGD": iterations_to_optimum(
                    lambda lr, t=topo: decjax.dpsgd(lr, t), quad, lrs, max_steps
                ),
            }
        )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    args = _common.parse(__doc__, argv, "detag")
    curves = unshuffled(args.quick)
    final = (
        curves.groupby(["shuffled", "algorithm"], sort=False)
        .last()
        .reset_index()[
            [
                "shuffled",
                "algorithm",
                "lr",
                "global_train_loss",
                "train_accuracy",
                "final_test_accuracy",
            ]
        ]
    )
    table = slack(args.quick)

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4))
    for ax, (shuffled, part) in zip(axes, curves.groupby("shuffled"), strict=False):
        for name, rows in part.groupby("algorithm", sort=False):
            ax.semilogy(rows["step"], rows["global_train_loss"], label=name)
        ax.set_title(f"{int(shuffled * 100)} % shuffled")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (averaged model)")
    axes[0].legend(fontsize=8)
    ok = table[table["DSGT"] > 0]
    axes[4].loglog(1 / ok["spectral_gap"], ok["DSGT"], "o-", label="DSGT")
    ok = table[table["DeTAG"] > 0]
    axes[4].loglog(1 / ok["spectral_gap"], ok["DeTAG"], "s-", label="DeTAG")
    axes[4].set_xlabel("1 / spectral gap")
    axes[4].set_title("iterations to 1e-4 of x*")
    axes[4].legend(fontsize=8)
    axes[4].grid(alpha=0.3)
    fig.tight_layout()
    _common.write(args, {"unshuffled": final, "slack": table}, {"summary": fig})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
