"""Datasets: offline digits and local arrays."""

import numpy as np

import decjax


def test_load_digits_is_real_offline_data(digits):
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    assert digits.num_classes == 10
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    counts = np.bincount(np.asarray(digits.y_test), minlength=10)
    assert counts.min() >= 35  # stratified split


def test_from_arrays_accepts_local_arrays_and_explicit_test_set():
    x, y = np.random.default_rng(0).random((50, 3)), np.arange(50) % 5
    ds = decjax.data.from_arrays(x, y, x_test=x[:7], y_test=y[:7])
    assert ds.x_test.shape == (7, 3) and ds.num_classes == 5 and ds.num_features == 3
