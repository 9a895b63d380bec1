"""Flax NNX models train under decjax (optional extra ``decjax[flax]``, installed in CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax

nnx = pytest.importorskip("flax.nnx")


class TwoLayer(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def test_nnx_params_are_a_plain_stackable_pytree_and_apply_matches_the_module():
    model = decjax.problems.from_nnx(TwoLayer)
    params = model.init(jax.random.key(3))
    module = TwoLayer(nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(0), (5, 64))
    np.testing.assert_allclose(model.apply(params, x), module(x), rtol=1e-6, atol=1e-6)
    stacked = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 4))
    assert stacked["hidden"]["kernel"].shape == (4, 64, 32)


def test_nnx_model_trains_with_decentralized_sgd_on_digits():
    ds = decjax.data.load_digits()
    n = 8
    data = decjax.data.distribute(ds, n, "iid", key=0)
    model = decjax.problems.from_nnx(TwoLayer)
    params = decjax.replicate(model.init(jax.random.key(0)), n)
    res = decjax.simulate(
        model.loss,
        params,
        decjax.dpsgd(0.2, decjax.exponential(n)),
        data,
        steps=200,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
    )
    assert res.final("test_accuracy") > 0.85
    assert res.metrics["train_loss"][-1] < 0.5 * res.metrics["train_loss"][0]


def test_nnx_modules_with_non_param_state_are_rejected():
    with pytest.raises(ValueError, match=r"only state is nnx\.Param"):
        decjax.problems.from_nnx(lambda rngs: nnx.BatchNorm(4, rngs=rngs))
    with pytest.raises(TypeError, match="make_model must be callable"):
        decjax.problems.from_nnx(jnp.ones(3))
