# %% [markdown]
# # Which robust rule survives which attack?
#
# Eight honest workers on a ring and eight Byzantine workers, each between two
# consecutive honest ones (16 workers; every honest worker has two honest and
# two Byzantine neighbours), train logistic regression on the digits
# with D-PSGD. For every attack × rule pair one `decjax.sweep` runs 2 seeds in
# one compile; the records are the honest workers' (their averaged model's
# test accuracy). The full reproduction of ClippedGossip's experiment, on
# MNIST-1D with a CNN, is `experiments/byzantine.py`.

# %%
import jax
import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd

import decjax
from decjax import byzantine as byz

honest = 8
graph = nx.cycle_graph(honest)
graph.add_edges_from((i, i + honest) for i in range(honest))  # Byzantine worker i + 8 sits
graph.add_edges_from(((i + 1) % honest, i + honest) for i in range(honest))  # between i, i + 1
topology = decjax.from_networkx(graph, weights="metropolis")
n = topology.n
bad = tuple(range(honest, n))

ds = decjax.data.load_digits()
data = decjax.data.distribute(ds, n, "iid", key=0)
model = decjax.problems.logistic_regression(64, 10)
params = decjax.replicate(model.init(jax.random.key(0)), n)

attacks = {
    "none": byz.NoAttack(),  # they send their own model, honestly trained
    "dissensus": byz.Dissensus(1.5),
    "label flip": byz.LabelFlip(10),
}
rules = {
    "gossip": byz.Gossip(),
    "median": byz.Median(),
    "CS+ (b=2)": byz.CSPlus(2),
}

rows = []
for attack_name, attack in attacks.items():
    for rule_name, rule in rules.items():
        robust = byz.Robust(rule, byz.Byzantine(bad, attack))
        result = decjax.sweep(
            model.loss,
            params,
            lambda: decjax.dpsgd(0.2, topology, robust=robust),
            data,
            {"seed": [0, 1]},
            steps=150,
            batch_size=16,
            eval_every=75,
            key=jax.random.key(1),
            eval_fn=model.eval_fn,
            eval_data=(ds.x_test, ds.y_test),
            progress=False,
        )
        accuracy = result.final("test_accuracy")
        rows.append({"attack": attack_name, "rule": rule_name, "accuracy": accuracy.mean()})
table = pd.DataFrame(rows).pivot(index="attack", columns="rule", values="accuracy")
table.loc[list(attacks), list(rules)].round(3)

# %% [markdown]
# Without an attack (`NoAttack`: the Byzantine workers send their own,
# honestly trained model, and only never combine) every rule learns about as
# well as gossip. Under attack plain gossip fails; the median survives
# dissensus, not label flipping; CS+ tolerating b = 2 holds against both. Note
# `LabelFlip`: `simulate` flips the Byzantine workers' labels itself, so the
# attack cannot be forgotten; attacks that ignore the sender's model
# (dissensus here) skip the Byzantine workers' gradients.

# %%
fig, ax = plt.subplots(figsize=(7, 3))
table.loc[list(attacks), list(rules)].plot.bar(ax=ax, rot=0)
ax.set_ylabel("test accuracy (honest average)")
ax.set_title("Logistic regression on digits, 8 honest and 8 Byzantine workers (2 seeds)")
ax.set_ylim(0, 1)
ax.legend(fontsize=8, ncol=4)
fig.tight_layout()
