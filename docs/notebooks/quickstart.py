# %% [markdown]
# # Quickstart: decentralize an optax chain on real data
#
# Sixteen workers each hold one or two digit classes (scikit-learn's digits,
# label-sorted). Each runs its own `optax` chain — gradient clipping then Adam —
# and averages its parameters with its neighbours on the static exponential
# graph. This notebook is executed every time the documentation is built.

# %%
import jax
import jax.numpy as jnp
import optax

import decjax

ds = decjax.data.load_digits()
data = decjax.data.distribute(ds, 16, "sorted", key=0)
print(
    "classes per worker:",
    (
        decjax.data.label_histogram(
            ds.y_train, decjax.data.partition(ds.y_train, 16, "sorted", key=0), 10
        )
        > 0
    ).sum(axis=1),
)

# %% [markdown]
# Parameters are stacked over workers: every leaf has a leading axis of 16.

# %%
model = decjax.problems.mlp([64, 64, 10])
params = decjax.replicate(model.init(jax.random.key(0)), 16)
print(jax.tree.map(lambda x: x.shape, params))

# %% [markdown]
# Any optax optimizer becomes decentralized: `per_worker(chain)` then gossip
# (`decjax.decentralize(chain, W)`, or `decjax.chain(..., algorithm)`).
#
# **Pitfall:** a raw `optax.clip_by_global_norm` sees the stacked `(16, ...)`
# tree as one model and clips the norm of all workers' gradients together.
# `decjax.chain` and `decentralize` apply it per worker (`decjax.per_worker`);
# `simulate` refuses a bare `optax.chain` around a decjax algorithm. The cell
# below shows the difference on gradients where one worker's are 100 times
# larger than the others'.

# %%
grads = jax.tree.map(jnp.ones_like, params)
grads = jax.tree.map(lambda g: g.at[0].multiply(100.0), grads)
raw = optax.clip_by_global_norm(1.0)
wrapped = decjax.per_worker(optax.clip_by_global_norm(1.0))
together, _ = raw.update(grads, raw.init(params))
per_worker, _ = wrapped.update(grads, wrapped.init(params), params)
print(
    "worker 1's norm after clipping, all workers together:",
    float(optax.global_norm(jax.tree.map(lambda g: g[1], together))),
)
print(
    "worker 1's norm after clipping, per worker:          ",
    float(optax.global_norm(jax.tree.map(lambda g: g[1], per_worker))),
)

# %%
local = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
results = {}
for topology in [decjax.ring(16), decjax.exponential(16), decjax.complete(16)]:
    results[topology.name] = decjax.simulate(
        model.loss,
        params,
        decjax.decentralize(local, topology),
        data,
        steps=600,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
    )
    print(
        f"{topology.name:12s} test accuracy of the averaged model: "
        f"{results[topology.name].final('test_accuracy'):.3f}"
    )

# %% [markdown]
# Results come as arrays, a DataFrame and plots.

# %%
results["exponential"].to_dataframe().tail()

# %%
fig = results["ring"].plot(["train_loss", "consensus_distance", "test_accuracy"])
