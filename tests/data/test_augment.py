"""Augmentation is a crop of the zero-padded image, maybe mirrored: checked pixel-wise."""

import jax
import numpy as np
import pytest

import decjax
from decjax.data import augmented, random_crop_flip


def _explain(original, out, padding):
    """The (row, column, flipped) that make ``out`` from ``original``, or None."""
    h, w, _ = original.shape
    padded = np.pad(original, ((padding, padding), (padding, padding), (0, 0)))
    for flipped in (False, True):
        for r in range(2 * padding + 1):
            for c in range(2 * padding + 1):
                window = padded[r : r + h, c : c + w]
                if np.array_equal(window[:, ::-1] if flipped else window, out):
                    return r, c, flipped
    return None


def test_every_output_is_a_crop_of_the_padded_input_maybe_flipped():
    x = jax.random.uniform(jax.random.key(0), (16, 6, 6, 2)) + 0.1  # no zero pixels
    out = np.asarray(random_crop_flip(x, jax.random.key(1), padding=2))
    explained = [_explain(np.asarray(x[i]), out[i], 2) for i in range(16)]
    assert all(e is not None for e in explained)
    assert len({e for e in explained}) > 4  # offsets and flips vary over the batch
    assert {e[2] for e in explained} == {False, True}


def test_the_same_key_gives_the_same_augmentation_and_another_key_another():
    x = jax.random.uniform(jax.random.key(0), (8, 6, 6, 1))
    a = random_crop_flip(x, jax.random.key(1))
    np.testing.assert_array_equal(a, random_crop_flip(x, jax.random.key(1)))
    assert not np.array_equal(a, random_crop_flip(x, jax.random.key(2)))
    with pytest.raises(ValueError, match=r"images must be a batch \(B, H, W, C\)"):
        random_crop_flip(x[0], jax.random.key(0))


@pytest.mark.slow  # the augmentation's own properties stay in the inner loop
def test_an_augmented_loss_trains_per_worker_with_its_own_key():
    ds = decjax.data.synthetic_images(200, 50, shape=(8, 8, 1), noise=0.5)
    model = decjax.problems.logistic_regression(64, 10)
    n = 4
    res = decjax.simulate(
        augmented(model.loss),
        decjax.replicate(model.init(jax.random.key(0)), n),
        decjax.dpsgd(0.5, decjax.ring(n)),
        decjax.data.distribute(ds, n, "iid", key=0),
        steps=40,
        batch_size=8,
        key=jax.random.key(1),
        model_state={},
        progress=False,
    )
    assert np.all(np.isfinite(res.metrics["train_loss"]))
    assert res.metrics["train_loss"][-1] < res.metrics["train_loss"][0]
    assert all(leaf.shape[0] == n for leaf in jax.tree.leaves(res.params))
