"""Root conftest: runs before jax is imported anywhere (tests and doctests alike).

Eight CPU devices are emulated so sharding code paths are exercised on any
machine; strict rank promotion catches accidental broadcasting.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test makes (plots, the CLI's curves) are closed after it: a worker process
    runs many tests, and matplotlib warns (an error here) past 20 open figures."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
