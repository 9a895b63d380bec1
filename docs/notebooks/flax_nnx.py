# %% [markdown]
# # A Flax NNX model trained by 64 workers
#
# `decjax.problems.from_nnx` turns an NNX module into pure functions whose
# parameters (the module's `nnx.Param` state) stack over workers. 64 workers,
# each with a Dirichlet(0.3) share of the digits, train a small CNN-free MLP
# with gradient tracking on a one-peer exponential graph (64 = 2^6, so six
# consecutive rounds average exactly).

# %%
import jax
from flax import nnx

import decjax


class Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 48, rngs=rngs)
        self.out = nnx.Linear(48, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.gelu(self.hidden(x)))


model = decjax.problems.from_nnx(Net)
params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 64))  # 64 different inits
print(jax.tree.map(lambda x: x.shape, params))

# %%
ds = decjax.data.load_digits()
data = decjax.data.distribute(ds, 64, "dirichlet", key=0, alpha=0.3)
topology = decjax.one_peer_exponential(64)
result = decjax.simulate(
    model.loss,
    params,
    decjax.gradient_tracking(0.05, topology),
    data,
    steps=600,
    batch_size=8,
    key=jax.random.key(1),
    eval_fn=model.eval_fn,
    eval_data=(ds.x_test, ds.y_test),
    eval_workers=True,
    progress=False,
)
print(
    f"averaged model: {result.final('test_accuracy'):.3f}, "
    f"mean worker: {result.final('worker_test_accuracy'):.3f}, "
    f"consensus distance: {result.final('consensus_distance'):.2e}"
)

# %%
fig = result.plot(["train_loss", "consensus_distance", "test_accuracy"])
