"""The quadratic problem the algorithm oracles share."""

import pytest
from helpers import quadratics


@pytest.fixture(scope="module")
def quad():
    """8 workers in dimension 4 with distinct curvatures, so the local optima differ."""
    q = quadratics(8, 4, curvature=(0.5, 2.0))
    assert float(q.a.max() - q.a.min()) > 0.5
    return q
