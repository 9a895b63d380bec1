"""bfloat16 parameters: stochastic rounding's exact expectation, its bits, and low_precision's
step against float32 (updates below half a bfloat16 step: nearest drops them, stochastic
keeps them on average)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import bfloat16_digits, on_graph

import decjax
from decjax.algorithms import ALGORITHMS, NAMES, low_precision, stochastic_round
from decjax.algorithms.precision import _hashed_bits


def _neighbours(x):
    """The bfloat16 values just below and above float32 ``x`` in magnitude (as float64)."""
    raw = np.asarray(x, np.float32).view(np.uint32)
    low = (raw & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
    high = ((raw & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32)
    return low, high.astype(np.float64)


@pytest.mark.parametrize("x", [1 + 2**-9, -3.3e-3, 0.7, 1e-30, -123456.78])
def test_over_every_16_bit_draw_the_mean_is_x_exactly(x):
    """Rounding up happens for exactly (distance to the value below) x 2^16 of the 2^16
    possible high halves of the bits, so their mean is x (in float64, exactly)."""
    bits = (jnp.arange(2**16, dtype=jnp.uint32) << 16) | jnp.uint32(0xFFFF)  # low half unused
    rounded = stochastic_round(jnp.full(2**16, x, jnp.float32), bits)
    values = np.asarray(rounded.astype(jnp.float32), np.float64)
    assert values.mean() == np.float64(np.float32(x))
    assert set(np.unique(values)) <= set(_neighbours(x))


def test_exact_values_stay_and_signs_are_symmetric():
    x = jax.random.normal(jax.random.key(0), (4096,))
    bits = jax.random.bits(jax.random.key(1), x.shape, jnp.uint32)
    exact = x.astype(jnp.bfloat16).astype(jnp.float32)
    np.testing.assert_array_equal(stochastic_round(exact, bits), exact.astype(jnp.bfloat16))
    np.testing.assert_array_equal(stochastic_round(-x, bits), -stochastic_round(x, bits))
    special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0], jnp.float32)
    out = stochastic_round(special, jnp.full(5, 0xFFFF_FFFF, jnp.uint32)).astype(jnp.float32)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(special))
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == -np.inf


def _bits(key, shape):
    return _hashed_bits(jax.random.bits(key, (2,), jnp.uint32), shape)


def test_the_hashed_bits_are_uniform_and_unrelated_across_elements_and_keys():
    bits = np.asarray(_bits(jax.random.key(0), (1 << 20,)))
    counts = np.bincount(bits >> 24, minlength=256)  # the top byte: 256 bins of 4096 expected
    chi2 = ((counts - 4096.0) ** 2 / 4096.0).sum()
    assert chi2 < 350  # 255 degrees of freedom: p ~ 1e-4 at 350
    high = (bits >> 16).astype(np.float64)
    assert abs(np.corrcoef(high[:-1], high[1:])[0, 1]) < 0.01  # neighbours
    other = (np.asarray(_bits(jax.random.key(1), (1 << 20,))) >> 16).astype(np.float64)
    assert abs(np.corrcoef(high, other)[0, 1]) < 0.01  # another worker, step or leaf
    assert (np.asarray(_bits(jax.random.key(0), (1 << 20,))) == bits).all()  # and reproducible


def _quadratic_run(tx, params, steps):
    """Workers minimising 0.5 |x|^2 (gradient x) for ``steps`` steps of ``tx.step``."""

    def body(carry, _):
        p, s = carry
        p, s, _ = tx.step(p, s, p)
        return (p, s), None

    (p, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return p


def test_updates_below_half_a_bfloat16_step_survive_stochastic_rounding_only():
    """From x = 1 with learning rate 1e-3 every update (1e-3) is below half a bfloat16
    step at 1 (2^-9): nearest rounding never moves, stochastic rounding follows float32's
    (1 - 1e-3)^t on average over 512 parameters."""
    n, d, steps, lr = 8, 64, 300, 1e-3
    ring = decjax.ring(n)
    ones = jnp.ones((n, d), jnp.bfloat16)
    nearest = low_precision(decjax.dpsgd(lr, ring), rounding="nearest")
    np.testing.assert_array_equal(
        jax.jit(_quadratic_run, static_argnums=(0, 2))(nearest, ones, steps), ones
    )
    stochastic = low_precision(decjax.dpsgd(lr, ring), key=0)
    out = jax.jit(_quadratic_run, static_argnums=(0, 2))(stochastic, ones, steps)
    expected = (1 - lr) ** steps  # 0.741
    mean = float(jnp.mean(out.astype(jnp.float32)))
    assert abs(mean - expected) < 2e-3  # one bfloat16 step near 0.74 is 3.9e-3
    assert out.dtype == jnp.bfloat16


def test_one_step_is_the_float32_step_rounded_once():
    n = 4
    ring = decjax.ring(n)
    x = jax.random.normal(jax.random.key(0), (n, 1000)).astype(jnp.bfloat16)
    g = jax.random.normal(jax.random.key(1), (n, 1000)).astype(jnp.bfloat16)
    inner = decjax.dpsgd(0.1, ring, momentum=0.9)
    wide, _, info = inner.step(
        g.astype(jnp.float32), inner.init(x.astype(jnp.float32)), x.astype(jnp.float32)
    )
    near = low_precision(inner, rounding="nearest")
    new, state, near_info = near.step(g, near.init(x), x)
    np.testing.assert_array_equal(new, wide.astype(jnp.bfloat16))
    floats = [a for a in jax.tree.leaves(state.inner) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert floats and all(a.dtype == jnp.float32 for a in floats)  # momentum kept in float32
    assert near_info.keys() == info.keys() and float(near_info["bytes_sent"]) == float(
        info["bytes_sent"]
    )
    sto = low_precision(inner, key=3)
    new = np.asarray(sto.step(g, sto.init(x), x)[0].astype(jnp.float32), np.float64)
    low, high = _neighbours(np.asarray(wide))
    assert ((new == low) | (new == high)).all()
    assert 0.3 < float(np.mean(new == high)) < 0.7  # both directions happen


def test_it_trains_in_simulate_and_sweep_on_bfloat16_parameters():
    n = 8
    net, params, data = bfloat16_digits(n)
    make = lambda lr: low_precision(decjax.dpsgd(lr, decjax.ring(n)), key=1)  # noqa: E731
    kwargs = {"steps": 40, "batch_size": 16, "key": jax.random.key(2), "progress": False}
    one = decjax.simulate(net.loss, params, make(0.1), data, **kwargs)
    both = decjax.sweep(net.loss, params, make, data, {"lr": [0.1, 0.2]}, **kwargs)
    assert jax.tree.leaves(one.params)[0].dtype == jnp.bfloat16
    assert one.metrics["train_loss"][-1] < one.metrics["train_loss"][0]
    np.testing.assert_array_equal(both.metrics["train_loss"][0], one.metrics["train_loss"])
    # a bfloat16 model's records reach the host widened (pandas refuses bfloat16 columns)
    assert all(v.dtype.itemsize >= 4 for v in one.metrics.values())
    assert len(both.to_dataframe()) == 2 * len(both.steps)


def test_float32_parameters_are_refused_with_the_cast_to_make():
    tx = low_precision(decjax.dpsgd(0.1, decjax.ring(4)), key=0)
    with pytest.raises(TypeError, match=r"astype\(jnp.bfloat16\)"):
        tx.init(jnp.ones((4, 3)))


def test_a_float16_store_rounds_to_nearest():
    tx = low_precision(optax.sgd(0.5), "float16", rounding="nearest")
    x = jnp.ones((2, 3), jnp.float16)
    new, _ = tx.apply(x, tx.init(x), x)
    np.testing.assert_array_equal(new, jnp.full((2, 3), 0.5, jnp.float16))


@pytest.mark.parametrize(
    "name",
    [
        n
        if n in ("dpsgd", "gradient_tracking", "sgp", "dasgd")
        else pytest.param(n, marks=pytest.mark.slow)
        for n in NAMES
    ],
)
def test_every_algorithm_under_low_precision_follows_its_float32_run(name):
    """Wrapped, every algorithm keeps bfloat16 parameters and ends within bfloat16's
    rounding of its own float32 run (full-batch quadratics, 30 steps): its state, delay
    buffers and push-sum weights survive the widening."""
    n = 8
    q = decjax.problems.quadratics(n, 4, key=jax.random.key(0))
    topology = on_graph(name, decjax.ring(n))
    kwargs = {"steps": 30, "key": jax.random.key(1), "progress": False}
    wide = decjax.simulate(
        q.loss, q.init_params(), ALGORITHMS[name](0.05, topology), q.data, **kwargs
    )
    tx = low_precision(ALGORITHMS[name](0.05, topology), key=2)
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), q.init_params())
    narrow = decjax.simulate(q.loss, params, tx, q.data, **kwargs)
    for a, b in zip(jax.tree.leaves(wide.params), jax.tree.leaves(narrow.params), strict=True):
        assert b.dtype == jnp.bfloat16
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(np.asarray(b, np.float32), a, atol=0.03 * scale)
    np.testing.assert_allclose(narrow.metrics["train_loss"], wide.metrics["train_loss"], rtol=0.05)


def test_after_an_exact_average_workers_round_apart_stochastically_and_together_to_nearest():
    n = 8
    x = jax.random.normal(jax.random.key(0), (n, 256)).astype(jnp.bfloat16)
    zero = jnp.zeros_like(x)
    complete = decjax.dpsgd(0.1, decjax.complete(n))
    for rounding, together in (("nearest", True), ("stochastic", False)):
        tx = low_precision(complete, rounding=rounding, key=0)
        new = np.asarray(tx.step(zero, tx.init(x), x)[0].astype(jnp.float32))
        assert (new == new[0]).all() == together
        np.testing.assert_allclose(new.mean(0), np.asarray(x, np.float32).mean(0), atol=0.02)


def test_a_bfloat16_models_training_loss_is_averaged_in_float32():
    """The record averages the workers' bfloat16 losses in float32: the mean of 8 losses
    near 2.3 in bfloat16 would be a multiple of 2^-6."""
    n = 8
    net, params, _ = bfloat16_digits(n)
    ds = decjax.data.load_digits()
    x = jnp.asarray(ds.x_train[: n * 20]).reshape(n, 20, -1).astype(jnp.bfloat16)
    y = jnp.asarray(ds.y_train[: n * 20]).reshape(n, 20)
    tx = low_precision(decjax.dpsgd(0.1, decjax.ring(n)), key=0)
    result = decjax.simulate(net.loss, params, tx, (x, y), steps=1, key=0, progress=False)
    losses = np.asarray(jax.vmap(net.loss)(params, (x, y)), np.float64)
    assert losses.dtype == np.float64 and result.metrics["train_loss"].dtype == np.float32
    np.testing.assert_allclose(result.metrics["train_loss"][0], losses.mean(), rtol=1e-6)
