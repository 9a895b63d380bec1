"""A sweep of the command line's default topologies at 16,384 workers fits in memory."""

import jax
import jax.numpy as jnp
import numpy as np

import decjax
from decjax import metrics


def test_the_default_sweep_at_16384_workers_compiles_to_a_bounded_footprint():
    """ring, exponential, complete and solo stacked as lists plus an averaging strength (no
    (n, n) matrix), and every worker evaluated on 1,000 test examples in groups: the
    compiled sweep's temporaries are 5.8 GiB (31.3 GiB when all 16,384 workers were
    evaluated at once, which failed on a 24 GiB machine)."""
    n = 16384
    stacked = decjax.topology.stack(
        [decjax.ring(n), decjax.exponential(n), decjax.complete(n), decjax.solo(n)]
    )
    assert stacked.representation == "sparse" and stacked.averaging is not None
    model = decjax.problems.mlp([8, 64, 4])
    params = jax.eval_shape(lambda k: decjax.replicate(model.init(k), n), jax.random.key(0))
    data = (jax.ShapeDtypeStruct((n, 2, 8), jnp.float32), jax.ShapeDtypeStruct((n, 2), jnp.int32))
    test = (jax.ShapeDtypeStruct((1000, 8), jnp.float32), jax.ShapeDtypeStruct((1000,), jnp.int32))
    run = decjax.make_run(
        model.loss,
        lambda topology: decjax.dpsgd(0.1, topology),
        steps=2,
        eval_every=2,
        eval_fn=model.eval_fn,
    )

    def one(topology, params, data, test):
        return run(params, jax.random.key(0), data, test, {"topology": topology})

    sweep = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
    memory = sweep.lower(stacked, params, data, test).compile().memory_analysis()
    assert memory.temp_size_in_bytes < 8 * 2**30


def test_workers_evaluated_in_groups_give_what_one_vmap_gives(monkeypatch):
    model = decjax.problems.mlp([64, 8, 10])
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 12))
    ds = decjax.data.load_digits()
    test = (ds.x_test[:50], ds.y_test[:50])
    whole = metrics.evaluate(model.eval_fn, params, test)
    monkeypatch.setattr(metrics, "EVALUATED_ROWS", 200)  # groups of 4 workers
    grouped = metrics.evaluate(model.eval_fn, params, test)
    for name, value in whole.items():
        np.testing.assert_allclose(grouped[name], value, rtol=1e-6, err_msg=name)
