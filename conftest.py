"""Root conftest: runs before jax is imported anywhere (tests and doctests alike).

Eight CPU devices are emulated so sharding code paths are exercised on any
machine; strict rank promotion catches accidental broadcasting.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# JAX's persistent compilation cache, shared by the xdist workers and the subprocesses the
# tests start: a small test spends most of its time compiling, and many compile the same
# program (a hit costs 0.3 s against 1.7-3.5 s). Every program is cached, the smallest too:
# a test pricing 24 steps eagerly compiled 81 small programs (6.8 s; 0.4 s from the cache),
# so a threshold of 0.2 s left most of the suite's compile time uncached. Set
# JAX_COMPILATION_CACHE_DIR to move the cache.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "decjax-tests-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

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


# The files of the longest tests (the experiments' and benchmarks' quick modes, two-process
# training): collected first, so that pytest-xdist's work stealing starts them first and
# the run does not end with one worker on a two-minute test while the other idles.
LONGEST_FIRST = (
    "test_experiments.py",
    "test_benchmarks.py",
    "test_experiment_helpers.py",
    "test_distributed.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file is kept
