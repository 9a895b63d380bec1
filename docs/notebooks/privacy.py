# %% [markdown]
# # What does epsilon cost on a graph?
#
# Eight workers train logistic regression on the digits with D-PSGD, each
# worker's gradient privatised by DP-SGD (`decjax.privacy.Clip`: per-example
# clipping to C = 1, Gaussian noise of σC/B on Poisson samples of expected size
# B = 16). One `decjax.sweep` covers the noise multipliers × two graphs × two
# seeds in one compile; the records carry `epsilon` (the PLD accountant, the
# worst worker's). Then Muffliato's pairwise accountant: what each node learns
# about the others on the ring. The full study on MNIST-1D is
# `experiments/privacy.py`.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import decjax
from decjax import privacy

n = 8
ds = decjax.data.load_digits()
data = decjax.data.distribute(ds, n, "iid", key=0)
model = decjax.problems.logistic_regression(64, 10)
params = decjax.replicate(model.init(jax.random.key(0)), n)

result = decjax.sweep(
    model.loss,
    params,
    lambda topology: decjax.dpsgd(0.5, topology),
    data,
    {
        "topology": [decjax.ring(n), decjax.complete(n)],
        "noise_multiplier": [0.5, 1.0, 4.0],
        "seed": [0, 1],
    },
    steps=100,
    batch_size=16,
    eval_every=50,
    key=jax.random.key(1),
    eval_fn=model.eval_fn,
    eval_data=(ds.x_test, ds.y_test),
    eval_workers=True,
    progress=False,
    privacy=privacy.Clip(1.0, delta=1e-5),
)
final = result.to_dataframe().query(f"step == {result.steps[-1]}")
columns = ["epsilon", "test_accuracy", "worker_test_accuracy", "consensus_distance"]
table = final.groupby(["topology", "noise_multiplier"])[columns].mean()
table.round(3)

# %% [markdown]
# ε depends only on σ, the sampling rate and the steps, not on the graph: it is
# each worker's local guarantee. The averaged model hardly depends on the graph
# either (gossip keeps the mean, and the mean's noise is the average of the
# workers' noises on any graph); the workers' own models do: each carries its
# noise until gossip averages it with its neighbours' (`worker_test_accuracy`,
# `consensus_distance`).

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for topology, part in table.reset_index().groupby("topology"):
    ax.plot(part["epsilon"], part["test_accuracy"], marker="o", label=f"{topology}, averaged")
    ax.plot(
        part["epsilon"],
        part["worker_test_accuracy"],
        marker="x",
        linestyle="--",
        label=f"{topology}, workers",
    )
ax.set_xscale("log")
ax.set_xlabel("epsilon (delta 1e-5, PLD)")
ax.set_ylabel("test accuracy")
ax.set_title("DP-SGD per worker, logistic regression on digits, n = 8 (2 seeds)")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Network DP: who learns what about whom
#
# Muffliato's bound (its Theorem 1) for noise σ = 2 and 3 gossip rounds on a
# ring of 16: a neighbour sees the noisy value itself (the local value,
# α / (2σ²) = 0.25 at α = 2), farther nodes learn less.

# %%
ring = decjax.ring(16)
pairs = privacy.pairwise_epsilon(ring, 3, sigma=2.0, alpha=2.0)
pd.Series(privacy.by_distance(pairs, ring), name="mean Rényi epsilon").rename_axis(
    "graph distance"
).round(4)

# %%
fig, ax = plt.subplots(figsize=(4, 3.4))
image = ax.imshow(np.nan_to_num(pairs), cmap="viridis")
ax.set_xlabel("observer v")
ax.set_ylabel("source u")
ax.set_title("Muffliato epsilon(u -> v), ring of 16, 3 rounds", fontsize=9)
fig.colorbar(image, ax=ax)
fig.tight_layout()
