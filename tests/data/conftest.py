"""The offline digits dataset the data tests share."""

import pytest

import decjax


@pytest.fixture(scope="module")
def digits():
    return decjax.data.load_digits()
