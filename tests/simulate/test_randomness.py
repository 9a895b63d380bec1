"""Every random draw of a run varies with its key: a sweep over seeds gives different runs.

Each case isolates one source of randomness (everything else deterministic: full
batches, no dropout), runs a sweep over seeds ``[0, 1]`` and a simulate with the
same key twice: the seeds must differ in the metric the source moves, the same
key must repeat bitwise. Before, sampling by epochs ignored the run's key (the
seeds gave bitwise-identical runs, error bars of zero), and so did fault
realizations, random graphs, delays, compression and the clock's draws, all
keyed by their constructors' keys only.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax.algorithms import uniform_delay

N = 8
KEY = jax.random.key(7)


def _quadratics():
    return decjax.problems.quadratics(N, 4, key=jax.random.key(0))


def _mlp_data(sampling="replacement"):
    ds = decjax.data.load_digits()
    return decjax.data.distribute(ds, N, "iid", key=0, sampling=sampling)


def _full_batch(model_state=None):
    """One example per worker, every step: no minibatch randomness."""
    data = _mlp_data()
    x = data.x[data.indices[:, :1]]
    return x, data.y[data.indices[:, :1]]


def _case(name):
    q = _quadratics()
    mlp = decjax.problems.mlp([64, 8, 10])
    mlp_params = decjax.replicate(mlp.init(jax.random.key(0)), N)
    quad = {"loss": q.loss, "params": q.init_params(), "data": q.data}
    ring = decjax.ring(N)
    if name == "batches":
        run = {"loss": mlp.loss, "params": mlp_params, "data": _mlp_data(), "batch_size": 4}
        return run, lambda lr: decjax.dpsgd(lr, ring), "train_loss"
    if name == "epochs":
        run = {"loss": mlp.loss, "params": mlp_params, "data": _mlp_data("epochs")}
        return {**run, "batch_size": 4}, lambda lr: decjax.dpsgd(lr, ring), "train_loss"
    if name == "dropout":
        nnx = pytest.importorskip("flax.nnx")

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.hidden = nnx.Linear(64, 8, rngs=rngs)
                self.drop = nnx.Dropout(0.5, rngs=rngs)
                self.out = nnx.Linear(8, 10, rngs=rngs)

            def __call__(self, x):
                return self.out(self.drop(nnx.relu(self.hidden(x))))

        model = decjax.problems.from_nnx(Net)
        params, state = model.init(jax.random.key(0))
        run = {
            "loss": model.loss,
            "params": decjax.replicate(params, N),
            "data": _full_batch(),
            "model_state": decjax.replicate(state, N),
        }
        return run, lambda lr: decjax.dpsgd(lr, ring), "train_loss"
    if name == "augmentation":
        images = decjax.data.synthetic_images(64, 8, shape=(8, 8, 1), num_classes=4)
        model = decjax.problems.mlp([64, 8, 4])
        x = images.x_train[: N * 2].reshape(N, 2, 8, 8, 1)
        loss = decjax.data.augmented(
            lambda p, b: model.loss(p, (b[0].reshape(b[0].shape[0], -1), b[1]))
        )
        run = {
            "loss": loss,
            "params": decjax.replicate(model.init(jax.random.key(0)), N),
            "data": (x, images.y_train[: N * 2].reshape(N, 2)),
            "model_state": {},
        }
        return run, lambda lr: decjax.dpsgd(lr, ring), "train_loss"
    if name == "faults":
        faulty = decjax.topology.with_faults(ring, key=jax.random.key(1), link_failure=0.5)
        return quad, lambda lr: decjax.dpsgd(lr, faulty), "consensus_distance"
    if name == "random_graph":
        epidemic = decjax.topology.epidemic(N, 2, key=jax.random.key(1))
        return quad, lambda lr: decjax.dpsgd(lr, epidemic), "consensus_distance"
    if name == "delays":
        return quad, lambda lr: decjax.dasgd(lr, ring, delays=uniform_delay(3)), "train_loss"
    if name == "stragglers":
        speeds = [1.0, 0.5] * (N // 2)

        def slow(lr):
            return decjax.algorithms.stragglers(decjax.dpsgd(lr, ring), speeds, key=KEY)

        return quad, slow, "train_loss"
    if name == "compression":

        def choco(lr):
            return decjax.choco_sgd(lr, ring, compressor=decjax.gossip.random_k(fraction=0.5))

        return quad, choco, "consensus_distance"
    if name == "clock":
        return quad, lambda lr: decjax.dpsgd(lr, ring), "time"
    raise KeyError(name)


SOURCES = [
    "batches",
    "epochs",
    "dropout",
    "augmentation",
    "faults",
    "random_graph",
    "delays",
    "stragglers",
    "compression",
    "clock",
]


def _clock(name):
    if name != "clock":
        return None
    compute = decjax.timing.Compute(0.1, law="lognormal", spread=0.5, key=jax.random.key(2))
    return decjax.timing.TimeModel(compute=compute)


@pytest.mark.parametrize("name", SOURCES)
def test_every_source_of_randomness_varies_with_the_seed(name):
    run, make_tx, metric = _case(name)
    common = {
        "steps": 6,
        "eval_every": 3,
        "batch_size": run.get("batch_size"),
        "model_state": run.get("model_state"),
        "timing": _clock(name),
        "progress": False,
    }
    swept = decjax.sweep(
        run["loss"],
        run["params"],
        make_tx,
        run["data"],
        {"lr": [0.05], "seed": [0, 1]},
        key=KEY,
        **common,
    )
    values = np.asarray(swept.metrics[metric])
    assert np.isfinite(values).all()
    assert not np.array_equal(values[0], values[1]), f"{name}: seeds 0 and 1 gave one run"
    # the same seed, the same run (simulate with the sweep's key for seed 1)
    once, twice = (
        decjax.simulate(
            run["loss"],
            run["params"],
            make_tx(0.05),
            run["data"],
            key=jax.random.fold_in(KEY, 1),
            **common,
        )
        for _ in range(2)
    )
    np.testing.assert_array_equal(once.metrics[metric], twice.metrics[metric])
    np.testing.assert_allclose(once.metrics[metric], values[1], rtol=1e-5, atol=1e-7)


def test_a_components_own_key_still_selects_its_stream():
    """Inside a run the draws fold in the run's key; the fault model's own key still
    matters: two fault keys under one run key differ."""
    q = _quadratics()
    runs = []
    for fault_key in (1, 2):
        faulty = decjax.topology.with_faults(
            decjax.ring(N), key=jax.random.key(fault_key), link_failure=0.5
        )
        runs.append(
            decjax.simulate(
                q.loss,
                q.init_params(),
                decjax.dpsgd(0.05, faulty),
                q.data,
                steps=6,
                eval_every=3,
                key=KEY,
                progress=False,
            ).metrics["consensus_distance"]
        )
    assert not np.array_equal(runs[0], runs[1])


def test_the_run_key_reaches_the_faults_that_realized_matrices_replays():
    """Host-side replay of a run's fault realizations: realized_matrices with the run's key
    gives the matrices the run used (the consensus after one step agrees)."""
    q = _quadratics()
    faulty = decjax.topology.with_faults(decjax.ring(N), key=jax.random.key(1), link_failure=0.5)
    x0 = q.init_params() + jnp.arange(N, dtype=jnp.float32)[:, None]
    result = decjax.simulate(
        lambda p, b: jnp.float32(0.0) * jnp.sum(p),
        x0,
        decjax.algorithms.combine(faulty),
        q.data,
        steps=1,
        eval_every=1,
        key=KEY,
        progress=False,
    )
    w = decjax.topology.realized_matrices(faulty, [0], run_key=KEY)[0]
    np.testing.assert_allclose(np.asarray(result.params), np.asarray(w) @ np.asarray(x0), rtol=1e-5)
