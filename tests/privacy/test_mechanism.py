"""The per-example Gaussian mechanism against loops and closed forms, and the accountant
against the Gaussian mechanism's exact value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decjax
from decjax import privacy


def _task():
    ds = decjax.data.load_digits()
    model = decjax.problems.mlp([64, 16, 10])
    params = model.init(jax.random.key(0))
    batch = (jnp.asarray(ds.x_train[:12]), jnp.asarray(ds.y_train[:12]))
    return model, params, batch


def test_per_example_gradients_equal_a_loop_over_examples():
    model, params, batch = _task()
    got = privacy.per_example_gradients(model.loss, params, batch)
    for b in range(batch[1].shape[0]):
        one = jax.grad(model.loss)(params, (batch[0][b : b + 1], batch[1][b : b + 1]))
        for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(a[b], e, rtol=1e-5, atol=1e-7)


def test_clipping_bounds_every_norm_and_leaves_small_gradients_alone():
    model, params, batch = _task()
    per = privacy.per_example_gradients(model.loss, params, batch)
    norms = np.sqrt(
        sum(np.sum(np.asarray(x).reshape(12, -1) ** 2, axis=1) for x in jax.tree.leaves(per))
    )
    clip = float(np.median(norms))
    clipped = privacy.clip_per_example(per, clip)
    after = np.sqrt(
        sum(np.sum(np.asarray(x).reshape(12, -1) ** 2, axis=1) for x in jax.tree.leaves(clipped))
    )
    assert np.all(after <= clip * (1 + 1e-5))
    np.testing.assert_allclose(after[norms > clip], clip, rtol=1e-5)
    small = norms <= clip
    for a, b in zip(jax.tree.leaves(clipped), jax.tree.leaves(per), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[small], np.asarray(b)[small])


def test_without_noise_and_clipping_it_is_the_minibatch_gradient():
    model, params, batch = _task()
    got = privacy.private_gradient(
        model.loss, params, batch, jax.random.key(1), clip_norm=1e30, noise_multiplier=0.0
    )
    plain = jax.grad(model.loss)(params, batch)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_noise_has_standard_deviation_sigma_c_over_b_and_its_key_decides_it():
    model, params, batch = _task()
    clean = privacy.private_gradient(
        model.loss, params, batch, jax.random.key(0), clip_norm=0.5, noise_multiplier=0.0
    )

    def noisy(key):
        return privacy.private_gradient(
            model.loss, params, batch, key, clip_norm=0.5, noise_multiplier=2.0
        )

    draws = jax.vmap(noisy)(jax.random.split(jax.random.key(7), 400))
    noise = np.concatenate(
        [
            (np.asarray(d) - np.asarray(c)[None]).reshape(400, -1)
            for d, c in zip(jax.tree.leaves(draws), jax.tree.leaves(clean), strict=True)
        ],
        axis=1,
    )
    expected = 2.0 * 0.5 / 12
    assert abs(noise.std() / expected - 1) < 0.02  # ~4e5 values: relative error ~ 1e-3
    assert abs(noise.mean()) < 0.01 * expected
    same = noisy(jax.random.key(3))
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(noisy(jax.random.key(3))), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_accountant_gives_the_gaussian_mechanisms_exact_epsilon():
    """sigma = 10 for 100 full-batch steps is the Gaussian mechanism with mu = sqrt(100)/10 = 1,
    whose exact epsilon at delta = 1e-5 is 4.3772 (Dong, Roth & Su's mu-GDP conversion)."""
    from scipy import optimize, stats

    def delta_of(eps, mu=1.0):
        return stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)

    exact = optimize.brentq(lambda e: delta_of(e) - 1e-5, 0.1, 20)
    assert round(exact, 4) == 4.3772
    assert privacy.epsilon(100, 10.0, delta=1e-5) == pytest.approx(exact, abs=1e-3)
    rdp = privacy.epsilon(100, 10.0, delta=1e-5, accountant="rdp")
    assert exact < rdp < 1.2 * exact  # RDP is an upper bound
    sampled = privacy.epsilon(100, 10.0, delta=1e-5, sampling_rate=0.1)
    assert sampled < exact / 3  # subsampling amplifies privacy
    assert privacy.epsilon(0, 1.0, delta=1e-5) == 0.0
    assert privacy.epsilon(5, 0.0, delta=1e-5) == float("inf")


@pytest.mark.parametrize(
    "sigma, epochs, published", [(1.12, 60, 2.92), (0.6, 30, 9.74), (1.2, 10, 1.20)]
)
def test_the_classic_rdp_accountant_reproduces_tf_privacys_published_epsilons(
    sigma, epochs, published
):
    """TF Privacy's MNIST tutorial table (tutorials/README.md): batch 256 of 60,000,
    delta 1e-5; its steps are epochs * 60000 // 256."""
    steps = epochs * 60000 // 256
    got = privacy.epsilon(
        steps, sigma, delta=1e-5, sampling_rate=256 / 60000, accountant="rdp_classic"
    )
    assert got == pytest.approx(published, abs=0.025)
    tighter = privacy.epsilon(steps, sigma, delta=1e-5, sampling_rate=256 / 60000)
    assert tighter < got  # PLD is tight: below every RDP conversion


def test_without_dp_accounting_the_accountant_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"pip install 'decjax\[privacy\]'"):
        privacy.epsilon(10, 1.0, delta=1e-5)
    assert privacy.epsilon(0, 1.0, delta=1e-5) == 0.0  # nothing to account: no import
